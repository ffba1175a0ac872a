"""Gradient-based online selection: alignment with a validation gradient."""
from __future__ import annotations

import numpy as np

from training.mixer.base import Strategy, StrategyError, register_strategy, top_k_mask


@register_strategy("grad_select")
class GradSelect(Strategy):
    """Train on the candidates whose last-layer gradient points most along the
    validation gradient: the first-order estimate of how much a step on a
    sample lowers validation loss. GREATS (Wang et al., 2024, "GREATS: Online
    Selection of High-Quality Data for LLM Training", NeurIPS,
    arXiv:2410.09335) and LESS (Xia et al., 2024, "LESS: Selecting
    Influential Data for Targeted Instruction Tuning", ICML,
    arXiv:2402.04333) use this alignment with low-dimensional projected
    gradients, as the trainer provides here.

    Params: ``candidate_factor``; ``refresh`` steps between recomputing the
    validation gradient; ``val_per_domain`` windows per domain for it;
    ``target_domains`` whose validation data define the target (default: all).
    """

    defaults = {"candidate_factor": 2.0, "refresh": 10, "val_per_domain": 8,
                "target_domains": None}

    def __init__(self, domains, **params):
        super().__init__(domains, **params)
        targets = self.params["target_domains"]
        if targets is not None and (not isinstance(targets, list) or set(targets) - set(domains)):
            raise StrategyError(f"strategy grad_select: target_domains must be a list of {domains}")
        if self.params["candidate_factor"] < 1:
            raise StrategyError("strategy grad_select: candidate_factor must be >= 1")
        self.candidate_factor = float(self.params["candidate_factor"])
        self.val_grad: np.ndarray | None = None
        self.age = 0

    def select(self, candidates, signals):
        if self.val_grad is None or self.age >= self.params["refresh"]:
            val = signals.val_batch(self.params["target_domains"], self.params["val_per_domain"])
            g = signals.gradients(val).mean(0)
            self.val_grad = g / (np.linalg.norm(g) + 1e-12)
            self.age = 0
        self.age += 1
        grads = signals.gradients(candidates)
        score = grads @ self.val_grad / (np.linalg.norm(grads, axis=1) + 1e-12)
        return top_k_mask(score, signals.batch_size)

    def state_dict(self):
        return {"val_grad": None if self.val_grad is None else self.val_grad.tolist(),
                "age": self.age}

    def load_state_dict(self, state):
        self.val_grad = None if state["val_grad"] is None else np.asarray(state["val_grad"])
        self.age = int(state["age"])
