"""Loss-based online batch selection from a larger candidate pool."""
from __future__ import annotations

from training.mixer.base import Strategy, StrategyError, register_strategy, top_k_mask


@register_strategy("loss_select")
class LossSelect(Strategy):
    """Draw ``candidate_factor`` x batch candidates, score them with one
    inference pass, train on the top ``batch_size``.

    ``score: reducible`` (default) is RHO-LOSS (Mindermann et al., 2022,
    "Prioritized Training on Points that are Learnable, Worth Learning, and
    Not Yet Learnt", ICML, arXiv:2206.07137): training loss minus the loss of
    an "irreducible loss" model fitted on held-out data only (here the
    n-gram reference), which skips noise and already-learnt points.
    ``score: loss`` is plain high-loss selection (Loshchilov & Hutter, 2015,
    "Online Batch Selection for Faster Training of Neural Networks",
    arXiv:1511.06343; Jiang et al., 2019, "Selective Backprop").
    """

    defaults = {"candidate_factor": 2.0, "score": "reducible"}

    def __init__(self, domains, **params):
        super().__init__(domains, **params)
        if self.params["score"] not in ("reducible", "loss"):
            raise StrategyError("strategy loss_select: score must be 'reducible' or 'loss'")
        if self.params["candidate_factor"] < 1:
            raise StrategyError("strategy loss_select: candidate_factor must be >= 1")
        self.candidate_factor = float(self.params["candidate_factor"])

    def select(self, candidates, signals):
        score = signals.infer(candidates)
        if self.params["score"] == "reducible":
            score = score - signals.reference_sample_loss(candidates)
        return top_k_mask(score, signals.batch_size)
