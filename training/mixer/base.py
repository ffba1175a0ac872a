"""The interaction interface between the trainer and data strategies.

The trainer offers signals through a :class:`Signals` object (the paper's
section 5): (1) per-sample losses from the forward pass it already does,
passed to every hook; (2) per-sample gradient signals, computed only when a
strategy calls :meth:`Signals.gradients`; (3) inference on chosen samples
(:meth:`Signals.infer`, :meth:`Signals.val_batch`).

A strategy answers with at most three things: **domain weights** for the
sampler (:meth:`Strategy.domain_weights`), a **selection mask** over a
candidate batch (:meth:`Strategy.select`), or **per-sample loss weights**
(:meth:`Strategy.sample_weights`). Every hook is optional; the defaults say
"no opinion". Strategies register by name with :func:`register_strategy`; the
trainer only knows this module.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np
import torch


class StrategyError(ValueError):
    """Unknown strategy, bad params, or strategies that cannot be combined."""


@dataclass
class Batch:
    """Training windows with their provenance."""

    tokens: torch.Tensor  # [n, seq_len + 1]
    domains: np.ndarray   # [n] domain index of each window
    index: np.ndarray     # [n] window index within its domain

    def __len__(self) -> int:
        return len(self.domains)

    def subset(self, keep: np.ndarray) -> "Batch":
        rows = np.flatnonzero(keep) if keep.dtype == bool else keep
        return Batch(self.tokens[torch.as_tensor(rows)], self.domains[rows], self.index[rows])


class Signals(Protocol):
    """What the trainer exposes to strategies."""

    domains: list[str]
    step: int
    batch_size: int

    def infer(self, batch: Batch) -> np.ndarray:
        """Mean next-token loss per sample, no gradient (inference)."""

    def gradients(self, batch: Batch) -> np.ndarray:
        """Per-sample last-layer gradient projections ``[n, d]`` (costly: on request)."""

    def val_batch(self, domains: list[str] | None = None, per_domain: int = 8) -> Batch:
        """Windows from the held-out validation split."""

    def reference_domain_loss(self) -> np.ndarray:
        """Per-domain held-out loss of the n-gram reference model ``[K]``."""

    def reference_sample_loss(self, batch: Batch) -> np.ndarray:
        """Per-sample loss of a reference model fitted on held-out data only."""


class Strategy:
    """Base class: a strategy that has no opinion on anything.

    ``defaults`` lists every accepted param with its default; a config naming
    another param is rejected. ``candidate_factor`` > 1 asks the trainer for a
    larger candidate pool, from which :meth:`select` keeps ``batch_size`` rows.
    """

    name = "base"
    defaults: dict[str, Any] = {}
    candidate_factor = 1.0

    def __init__(self, domains: list[str], **params: Any) -> None:
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise StrategyError(f"strategy {self.name}: unknown param(s) {sorted(unknown)}; "
                                f"accepted: {sorted(self.defaults)}")
        self.domains = list(domains)
        self.k = len(domains)
        self.params = {**self.defaults, **params}

    def domain_weights(self, signals: Signals) -> np.ndarray | None:
        return None

    def select(self, candidates: Batch, signals: Signals) -> np.ndarray | None:
        return None

    def sample_weights(self, batch: Batch, losses: np.ndarray, signals: Signals) -> np.ndarray | None:
        return None

    def update(self, batch: Batch, losses: np.ndarray, signals: Signals) -> None:
        """After each optimiser step, with the per-sample losses of the step."""

    def on_eval(self, val_loss: dict[str, float], signals: Signals) -> None:
        """After each evaluation, with the per-domain validation losses."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


class MixtureStrategy(Strategy):
    """A strategy that sets domain weights, with smoothing and a per-domain floor.

    ``smoothing`` s in [0, 1): new weights are ``s * previous + (1 - s) * proposed``;
    ``floor`` f in [0, 1/K]: every domain keeps at least ``f`` of the mixture
    (weights are mapped to ``f + (1 - K f) w``), so no domain starves unless
    the config allows it with ``floor: 0``.
    """

    base_defaults: dict[str, Any] = {"smoothing": 0.0, "floor": 0.02}

    def __init__(self, domains: list[str], **params: Any) -> None:
        self.defaults = {**self.base_defaults, **self.defaults}
        super().__init__(domains, **params)
        s, f = self.params["smoothing"], self.params["floor"]
        if not 0 <= s < 1:
            raise StrategyError(f"strategy {self.name}: smoothing must be in [0, 1), got {s}")
        if not 0 <= f <= 1 / self.k:
            raise StrategyError(f"strategy {self.name}: floor must be in [0, 1/{self.k}], got {f}")
        self.weights = np.full(self.k, 1 / self.k)

    def propose(self, raw: np.ndarray) -> np.ndarray:
        """Regularise raw non-negative scores into the next weights and keep them."""
        raw = np.clip(np.asarray(raw, dtype=float), 0, None)
        w = raw / raw.sum() if raw.sum() > 0 else np.full(self.k, 1 / self.k)
        s, f = self.params["smoothing"], self.params["floor"]
        w = s * self.weights + (1 - s) * w
        w = f + (1 - self.k * f) * w
        self.weights = w / w.sum()
        return self.weights

    def domain_weights(self, signals: Signals) -> np.ndarray:
        return self.weights

    def state_dict(self) -> dict[str, Any]:
        return {"weights": self.weights.tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.weights = np.asarray(state["weights"], dtype=float)


def domain_means(batch: Batch, values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-domain sum and count of ``values`` over a batch."""
    sums = np.bincount(batch.domains, weights=values, minlength=k)
    counts = np.bincount(batch.domains, minlength=k)
    return sums, counts


def top_k_mask(scores: np.ndarray, keep: int) -> np.ndarray:
    """Boolean mask of the ``keep`` highest scores (ties broken by position)."""
    order = np.argsort(-scores, kind="stable")[:keep]
    mask = np.zeros(len(scores), dtype=bool)
    mask[order] = True
    return mask


_REGISTRY: dict[str, type[Strategy]] = {}


def register_strategy(name: str) -> Callable[[type[Strategy]], type[Strategy]]:
    def wrap(cls: type[Strategy]) -> type[Strategy]:
        if name in _REGISTRY:
            raise StrategyError(f"strategy {name!r} registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls
    return wrap


def strategy_class(name: str) -> type[Strategy]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise StrategyError(f"unknown strategy {name!r}; known: {sorted(_REGISTRY)}") from None


def strategy_names() -> list[str]:
    return sorted(_REGISTRY)
