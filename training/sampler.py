"""Domain-weighted sampling of training windows, with resumable state.

How many slots of a batch each domain gets is drawn by *systematic*
sampling: one uniform offset ``u`` per batch, slot ``i`` goes to the domain
whose cumulative weight interval holds ``(u + i) / n``. Each domain's count
is ``n w`` rounded down or up (never further), its expectation exactly ``n
w``: the stratified sampling the Aioli paper (arXiv:2411.05735) uses as its
baseline, where independent draws per slot would add multinomial noise to
every batch. It also means two strategies whose weights differ a little
train on almost the same windows, so comparisons between strategies measure
the weights rather than sampling luck. Within a domain, windows come in a
fresh shuffled order per epoch, so every window is seen once before any
repeats. The whole state (generator state, per-domain epoch and cursor) is
plain JSON for the checkpoint.
"""
from __future__ import annotations

import numpy as np


class DomainSampler:
    def __init__(self, sizes: list[int], seed: int) -> None:
        self.sizes = list(sizes)
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.epoch = [0] * len(sizes)
        self.cursor = [0] * len(sizes)
        self._perm: dict[int, np.ndarray] = {}

    def _order(self, d: int) -> np.ndarray:
        if d not in self._perm:
            gen = np.random.default_rng([self.seed, d, self.epoch[d]])
            self._perm[d] = gen.permutation(self.sizes[d])
        return self._perm[d]

    def _take(self, d: int, n: int) -> np.ndarray:
        out = []
        while n:
            order = self._order(d)
            chunk = order[self.cursor[d]:self.cursor[d] + n]
            out.append(chunk)
            n -= len(chunk)
            self.cursor[d] += len(chunk)
            if self.cursor[d] == len(order):
                self.epoch[d] += 1
                self.cursor[d] = 0
                self._perm.pop(d)
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    def draw(self, n: int, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``n`` (domain, window index) pairs drawn under ``weights``."""
        w = np.clip(np.asarray(weights, dtype=float), 0, None)
        edges = np.cumsum(w / w.sum())
        edges[-1] = 1.0
        points = (self.rng.random() + np.arange(n)) / n
        domains = np.minimum(np.searchsorted(edges, points, side="right"), len(self.sizes) - 1)
        index = np.empty(n, dtype=np.int64)
        for d in np.unique(domains):
            rows = np.flatnonzero(domains == d)
            index[rows] = self._take(int(d), len(rows))
        return domains, index

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "epoch": list(self.epoch),
                "cursor": list(self.cursor)}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.epoch = list(state["epoch"])
        self.cursor = list(state["cursor"])
        self._perm.clear()
