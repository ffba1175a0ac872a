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

What a strategy may see: training batches and the *selection holdout*
(``val_batch``). The evaluation split the trainer reports is never passed
to a hook. With several ranks, ``domain_weights`` runs on rank 0 only (its
answer is broadcast) and must not call the signals; every other hook runs
on every rank with identical inputs, and rank 0's answer is the one used.
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

    def reference_model_loss(self, batch: Batch, params: dict) -> np.ndarray:
        """Per-sample loss of a small GPT trained on the uniform mixture
        (DoReMi's reference model; ``params``: layers, hidden, steps)."""


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

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


class MixtureStrategy(Strategy):
    """A strategy that sets domain weights, regularised against collapse.

    Every proposal passes through four params, in this order:

    - ``momentum`` m in [0, 1): ``w = m * previous + (1 - m) * proposed``
      (temporal smoothing);
    - ``smoothing`` s in [0, 1]: ``w = (1 - s) * w + s / K``, smoothing
      toward uniform (DoReMi's ``c``, Xie et al., 2023, Algorithm 1);
    - ``floor`` f in [0, 1/K]: every domain keeps at least ``f``;
    - ``cap`` c in [1/K, 1]: no domain gets more than ``c``.

    Floor and cap are enforced by clipping and re-spreading the rest of
    the mass over the unclipped domains in proportion to their weights
    (:func:`bound`), so the ordering among domains is kept. Left
    unset (``null``), they scale with the number of domains K: ``floor =
    floor_share / K`` and ``cap = min(1, cap_share / K)``, by default a
    fifth and three times a domain's uniform share, so an adaptive strategy
    can neither starve nor be taken over by one domain unless the config
    says so (``floor: 0``, ``cap: 1``).
    """

    base_defaults: dict[str, Any] = {"momentum": 0.0, "smoothing": 0.0, "floor": None, "cap": None}
    floor_share = 0.2
    cap_share = 3.0

    def __init__(self, domains: list[str], **params: Any) -> None:
        self.defaults = {**self.base_defaults, **self.defaults}
        super().__init__(domains, **params)
        p = self.params
        if p["floor"] is None:
            p["floor"] = self.floor_share / self.k
        if p["cap"] is None:
            p["cap"] = min(1.0, self.cap_share / self.k)
        checks = (("momentum", 0 <= p["momentum"] < 1, "[0, 1)"),
                  ("smoothing", 0 <= p["smoothing"] <= 1, "[0, 1]"),
                  ("floor", 0 <= p["floor"] <= 1 / self.k + 1e-12, f"[0, 1/{self.k}]"),
                  ("cap", 1 / self.k - 1e-12 <= p["cap"] <= 1, f"[1/{self.k}, 1]"))
        for name, ok, rng in checks:
            if not ok:
                raise StrategyError(f"strategy {self.name}: {name} must be in {rng}, got {p[name]}")
        self.weights = np.full(self.k, 1 / self.k)

    def regularise(self, w: np.ndarray, previous: np.ndarray | None = None) -> np.ndarray:
        """``w`` (normalised) after momentum, smoothing, floor and cap."""
        p = self.params
        prev = self.weights if previous is None else previous
        w = p["momentum"] * prev + (1 - p["momentum"]) * w
        w = (1 - p["smoothing"]) * w + p["smoothing"] / self.k
        return bound(w, p["floor"], p["cap"])

    def propose(self, raw: np.ndarray) -> np.ndarray:
        """Regularise raw non-negative scores into the next weights and keep them."""
        raw = np.clip(np.asarray(raw, dtype=float), 0, None)
        w = raw / raw.sum() if raw.sum() > 0 else np.full(self.k, 1 / self.k)
        self.weights = self.regularise(w)
        return self.weights

    def domain_weights(self, signals: Signals) -> np.ndarray:
        return self.weights

    def state_dict(self) -> dict[str, Any]:
        return {"weights": self.weights.tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.weights = np.asarray(state["weights"], dtype=float)


def bound(w: np.ndarray, floor: float, cap: float) -> np.ndarray:
    """Weights summing to 1 with ``floor <= w_i <= cap``: ``clip(lam * w, floor, cap)``
    with the one common scale ``lam`` that makes them sum to 1 (found by
    bisection; the sum is monotone in ``lam``), so domains between the
    bounds keep their ratios. Zero weights count as a tiny positive one, so
    they are lifted last when floor and cap leave mass to place."""
    w = np.clip(np.asarray(w, dtype=float), 0, None)
    k = len(w)
    v = w / w.sum() if w.sum() > 0 else np.full(k, 1 / k)
    if floor <= 0 and cap >= 1:
        return v
    v = np.maximum(v, 1e-12)
    lo, hi = 0.0, 1.0
    for _ in range(200):
        if np.clip(hi * v, floor, cap).sum() >= 1:
            break
        hi *= 4
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if np.clip(mid * v, floor, cap).sum() < 1 else (lo, mid)
    out = np.clip(hi * v, floor, cap)
    return out / out.sum()


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
