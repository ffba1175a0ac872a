"""Per-domain bigram reference models for strategies that need a reference loss.

DoReMi compares against a reference model's loss and RHO-LOSS against an
"irreducible loss" model trained on held-out data. A smoothed bigram per
domain plays both parts at the cost of a count table: it needs no extra
training run, and it reaches low loss on text with local structure but not
on shuffled or corrupted text, which is the contrast those methods rely on.
Counting is a few ``numpy`` calls; no library ships this for token windows.
"""
from __future__ import annotations

import numpy as np

# Dirichlet prior strength towards the unigram: large enough that a bigram
# seen once does not dominate, small next to real counts.
PRIOR = 20.0


class Bigram:
    """A Dirichlet-smoothed bigram model over token ids.

    Keeps the raw counts and scores only the pairs asked for: a full
    log-probability table would cost ``vocab**2`` logs per model for a few
    thousand lookups.
    """

    def __init__(self, windows: np.ndarray, vocab: int) -> None:
        self.vocab = vocab
        uni = np.bincount(windows.reshape(-1), minlength=vocab).astype(np.float64) + 0.5
        self.uni = uni / uni.sum()
        pairs = windows[:, :-1].reshape(-1) * vocab + windows[:, 1:].reshape(-1)
        self.pairs = np.bincount(pairs, minlength=vocab * vocab)
        self.rows = np.bincount(windows[:, :-1].reshape(-1), minlength=vocab)

    def sample_loss(self, windows: np.ndarray) -> np.ndarray:
        """Mean next-token loss per window ``[n]``."""
        prev, nxt = windows[:, :-1], windows[:, 1:]
        p = (self.pairs[prev * self.vocab + nxt] + PRIOR * self.uni[nxt]) / (self.rows[prev] + PRIOR)
        return -np.log(p).mean(1)


class BigramReference:
    """Reference losses per domain, built on first use by the trainer.

    ``domain_loss``: a bigram fitted on a domain's training windows, scored on
    its validation windows (DoReMi's reference loss). ``sample_loss``: a
    bigram fitted on the validation windows only, scored on any windows of
    that domain (RHO-LOSS's irreducible loss: never trained on the points it
    scores).
    """

    def __init__(self, train: dict[str, np.ndarray], val: dict[str, np.ndarray],
                 domains: list[str], vocab: int) -> None:
        self.train, self.val, self.domains, self.vocab = train, val, domains, vocab
        self._domain_loss: np.ndarray | None = None
        self._holdout: list[Bigram] | None = None

    @property
    def domain_loss(self) -> np.ndarray:
        if self._domain_loss is None:
            self._domain_loss = np.array([
                Bigram(self.train[d], self.vocab).sample_loss(self.val[d]).mean() for d in self.domains])
        return self._domain_loss

    def sample_loss(self, windows: np.ndarray, domains: np.ndarray) -> np.ndarray:
        if self._holdout is None:
            self._holdout = [Bigram(self.val[d], self.vocab) for d in self.domains]
        out = np.empty(len(windows))
        for d in np.unique(domains):
            rows = domains == d
            out[rows] = self._holdout[d].sample_loss(windows[rows])
        return out
