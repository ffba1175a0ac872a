"""Online DoReMi: exponentiated-gradient mixing on excess loss over a reference."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from training.mixer.base import MixtureStrategy, StrategyError, domain_means, register_strategy


@register_strategy("doremi")
class DoReMi(MixtureStrategy):
    """DoReMi's domain update run online on the model being trained.

    Xie et al., 2023, "DoReMi: Optimizing Data Mixtures Speeds Up Language
    Model Pretraining", NeurIPS, arXiv:2305.10429 (Algorithm 1): per-domain
    excess loss ``lambda_i = max(loss_i - ref_i, 0)``; ``alpha <- alpha *
    exp(eta * lambda)``, normalised, mixed with uniform by ``floor`` (their
    smoothing ``c``). Online, as in the paper's "DoReMi with the main model"
    ablation, instead of a separate proxy model.

    Params: ``eta`` step size; ``decay`` (not in the paper; the default 0
    is its update) shrinks the accumulated log-weights towards uniform each
    step, ``log alpha <- (1 - decay) log alpha + eta lambda``, so weights
    follow the recent excess loss (bounded by ``eta lambda / decay``) instead
    of all of history, which can drive all but one domain to the floor (the
    benchmark shows the trade: faster on its corpus without decay);
    ``ema`` smoothing of the per-domain training loss across steps; ``reference``: ``"bigram"`` (an n-gram model fitted per
    domain, its held-out loss; no extra run needed), a mapping {domain:
    loss}, or the path of a reference run's ``summary.json`` (its final
    validation losses, as DoReMi's reference model).
    """

    defaults = {"eta": 0.1, "decay": 0.0, "ema": 0.9, "reference": "bigram"}

    def __init__(self, domains, **params):
        super().__init__(domains, **params)
        self.log_alpha = np.zeros(self.k)
        self.loss_ema = np.full(self.k, np.nan)
        self.ref: np.ndarray | None = None

    def _reference(self, signals) -> np.ndarray:
        ref = self.params["reference"]
        if ref == "bigram":
            return np.asarray(signals.reference_domain_loss(), dtype=float)
        if isinstance(ref, str):
            path = Path(ref)
            if not path.is_file():
                raise StrategyError(f"strategy doremi: reference run {path} not found")
            ref = json.loads(path.read_text().strip().splitlines()[-1])["final_val_loss"]
        if not isinstance(ref, dict) or set(self.domains) - set(ref):
            raise StrategyError(f"strategy doremi: reference must give a loss for each of "
                                f"{self.domains}, got {ref!r}")
        return np.array([float(ref[d]) for d in self.domains])

    def update(self, batch, losses, signals):
        if self.ref is None:
            self.ref = self._reference(signals)
        sums, counts = domain_means(batch, losses, self.k)
        seen = counts > 0
        mean = np.where(seen, sums / np.maximum(counts, 1), 0.0)
        fresh = seen & np.isnan(self.loss_ema)
        self.loss_ema[fresh] = mean[fresh]
        a = self.params["ema"]
        old = seen & ~fresh
        self.loss_ema[old] = a * self.loss_ema[old] + (1 - a) * mean[old]
        excess = np.where(np.isnan(self.loss_ema), 0.0, np.maximum(self.loss_ema - self.ref, 0.0))
        self.log_alpha = (1 - self.params["decay"]) * self.log_alpha + self.params["eta"] * excess
        self.log_alpha -= self.log_alpha.max()
        self.propose(np.exp(self.log_alpha))

    def state_dict(self):
        return {**super().state_dict(), "log_alpha": self.log_alpha.tolist(),
                "loss_ema": self.loss_ema.tolist(),
                "ref": None if self.ref is None else self.ref.tolist()}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.log_alpha = np.asarray(state["log_alpha"], dtype=float)
        self.loss_ema = np.asarray(state["loss_ema"], dtype=float)
        self.ref = None if state["ref"] is None else np.asarray(state["ref"], dtype=float)
