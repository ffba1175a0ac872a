"""Static mixing: fixed weights from the config."""
from __future__ import annotations

import numpy as np

from training.mixer.base import MixtureStrategy, StrategyError, register_strategy


@register_strategy("static")
class Static(MixtureStrategy):
    """Fixed domain weights, e.g. hand-tuned or taken from an offline DoReMi
    run (the setting of The Pile, Gao et al., 2020, arXiv:2101.00027, and of
    DoReMi's final averaged weights, Xie et al., 2023, arXiv:2305.10429).

    Params: ``weights`` {domain: non-negative number}, normalised to sum 1.
    """

    floor_share, cap_share = 0.0, float("inf")
    defaults = {"weights": None}

    def __init__(self, domains, **params):
        super().__init__(domains, **params)
        given = self.params["weights"]
        if not isinstance(given, dict) or set(given) != set(self.domains):
            raise StrategyError(f"strategy static: params.weights must give a weight for each of "
                                f"{self.domains}, got {given!r}")
        raw = np.array([float(given[d]) for d in self.domains])
        if (raw < 0).any() or raw.sum() <= 0:
            raise StrategyError(f"strategy static: weights must be >= 0 and not all 0, got {given}")
        self.propose(raw)
