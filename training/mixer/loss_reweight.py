"""Loss-based per-sample reweighting of the training loss."""
from __future__ import annotations

import numpy as np

from training.mixer.base import Strategy, StrategyError, register_strategy


@register_strategy("loss_reweight")
class LossReweight(Strategy):
    """Per-sample loss weights ``w_i ∝ exp(sign * z_i / temperature)`` with
    ``z_i`` the batch-standardised loss, clipped to ``[min_weight,
    max_weight]`` and normalised to mean 1.

    ``direction: hard`` up-weights high-loss samples (Sow et al., 2025,
    "Dynamic Loss-Based Sample Reweighting for Improved Large Language Model
    Pretraining", ICLR, arXiv:2502.06733); ``direction: easy`` down-weights
    them, the noise-robust reading (Kang & Hashimoto, 2020, "Improved Natural
    Language Generation via Loss Truncation", ACL, arXiv:2004.14589).
    """

    defaults = {"direction": "hard", "temperature": 1.0, "min_weight": 0.2, "max_weight": 3.0}

    def __init__(self, domains, **params):
        super().__init__(domains, **params)
        if self.params["direction"] not in ("hard", "easy"):
            raise StrategyError("strategy loss_reweight: direction must be 'hard' or 'easy'")
        if self.params["temperature"] <= 0:
            raise StrategyError("strategy loss_reweight: temperature must be > 0")

    def sample_weights(self, batch, losses, signals):
        sign = 1.0 if self.params["direction"] == "hard" else -1.0
        z = (losses - losses.mean()) / (losses.std() + 1e-8)
        w = np.exp(sign * z / self.params["temperature"])
        w = np.clip(w / w.mean(), self.params["min_weight"], self.params["max_weight"])
        return w / w.mean()
