"""Several strategies at once, behind the single-strategy interface."""
from __future__ import annotations

from typing import Any

import numpy as np

from training.mixer.base import Strategy, StrategyError, strategy_class


class MixerStack(Strategy):
    """Runs strategies together: at most one sets domain weights, at most one
    selects, any number reweight (their weights multiply, renormalised to
    mean 1). With no strategy that sets weights the mixture is uniform."""

    name = "stack"

    def __init__(self, domains: list[str], strategies: list[Strategy]) -> None:
        super().__init__(domains)
        self.strategies = strategies
        for hook, what in (("domain_weights", "domain weights"), ("select", "a selection mask")):
            owners = [s.name for s in strategies if _overrides(s, hook)]
            if len(owners) > 1:
                raise StrategyError(f"strategies {owners} all return {what}; "
                                    "combine at most one of them with others")
        self.candidate_factor = max(s.candidate_factor for s in strategies)
        self.names = [s.name for s in strategies]

    def domain_weights(self, signals):
        for s in self.strategies:
            w = s.domain_weights(signals)
            if w is not None:
                return np.asarray(w, dtype=float)
        return np.full(self.k, 1 / self.k)

    def select(self, candidates, signals):
        for s in self.strategies:
            mask = s.select(candidates, signals)
            if mask is not None:
                return mask
        return None

    def sample_weights(self, batch, losses, signals):
        out = None
        for s in self.strategies:
            w = s.sample_weights(batch, losses, signals)
            if w is not None:
                out = w if out is None else out * w
        return None if out is None else out / out.mean()

    def update(self, batch, losses, signals):
        for s in self.strategies:
            s.update(batch, losses, signals)

    def state_dict(self):
        return {"names": self.names, "states": [s.state_dict() for s in self.strategies]}

    def load_state_dict(self, state):
        if state["names"] != self.names:
            raise StrategyError(f"checkpoint holds strategies {state['names']}, "
                                f"config names {self.names}")
        for s, st in zip(self.strategies, state["states"]):
            s.load_state_dict(st)


def _overrides(strategy: Strategy, hook: str) -> bool:
    return getattr(type(strategy), hook) is not getattr(Strategy, hook)


def build_mixer(mixer_cfg: dict[str, Any], domains: list[str]) -> MixerStack:
    """The mixer for a config's ``mixer`` section (one name or a list)."""
    from training.config import DEFAULT_STRATEGY

    spec = mixer_cfg.get("strategy", DEFAULT_STRATEGY)
    if isinstance(spec, str):
        entries = [{"strategy": spec, "params": mixer_cfg.get("params") or {}}]
    else:
        if mixer_cfg.get("params"):
            raise StrategyError("mixer.params applies to a single strategy; with a list, "
                                "give params inside each entry")
        entries = spec
    strategies = [strategy_class(e["strategy"])(domains, **(e.get("params") or {}))
                  for e in entries]
    return MixerStack(domains, strategies)
