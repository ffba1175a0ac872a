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
    """A Dirichlet-smoothed bigram model over token ids."""

    def __init__(self, windows: np.ndarray, vocab: int) -> None:
        stream = windows.reshape(-1)
        uni = np.bincount(stream, minlength=vocab).astype(np.float64) + 0.5
        uni /= uni.sum()
        pairs = windows[:, :-1].reshape(-1) * vocab + windows[:, 1:].reshape(-1)
        counts = np.bincount(pairs, minlength=vocab * vocab).astype(np.float32)
        counts = counts.reshape(vocab, vocab)
        row = counts.sum(1, keepdims=True)
        self.logp = np.log((counts + PRIOR * uni[None, :].astype(np.float32)) / (row + PRIOR))

    def sample_loss(self, windows: np.ndarray) -> np.ndarray:
        """Mean next-token loss per window ``[n]``."""
        return -self.logp[windows[:, :-1], windows[:, 1:]].mean(1)


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
        self.domains = domains
        self.domain_loss = np.array([
            Bigram(train[d], vocab).sample_loss(val[d]).mean() for d in domains])
        self.holdout = [Bigram(val[d], vocab) for d in domains]

    def sample_loss(self, windows: np.ndarray, domains: np.ndarray) -> np.ndarray:
        out = np.empty(len(windows))
        for d in np.unique(domains):
            rows = domains == d
            out[rows] = self.holdout[d].sample_loss(windows[rows])
        return out
