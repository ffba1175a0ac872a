"""Online DoReMi: exponentiated-gradient mixing on excess loss over a reference model."""
from __future__ import annotations

import numpy as np

from training.mixer.base import MixtureStrategy, StrategyError, domain_means, register_strategy


@register_strategy("doremi")
class DoReMi(MixtureStrategy):
    """DoReMi's domain update run online on the model being trained.

    Xie et al., 2023, "DoReMi: Optimizing Data Mixtures Speeds Up Language
    Model Pretraining", NeurIPS, arXiv:2305.10429 (Algorithm 1): a
    *reference model* trained on the uniform mixture scores each training
    batch; a domain's excess loss is ``lambda_i = mean over its samples of
    max(loss - ref_loss, 0)``; ``alpha <- alpha * exp(eta * lambda)``,
    normalised, smoothed toward uniform (the paper's ``c``: the
    ``smoothing`` param). Online, as in the paper's "DoReMi with the main
    model" setting: the weights drive the sampler of the model being
    trained instead of a separate proxy run.

    ``reference``: ``"proxy"`` (default, the paper's reference model: a
    small GPT of ``ref_layers`` x ``ref_hidden`` trained for ``ref_steps``
    uniform steps on the training split (default: as many as the run, the
    paper's equal budget; a reference trained for less than the run stops
    telling noise from signal once the main model overtakes it), cached
    with the tokens; its cost is reported as ``reference_seconds``), ``"bigram"`` (a bigram model per
    domain, its loss on the selection holdout: a cheap stand-in for the
    reference, compared against an EMA of the domain's training loss), or a
    mapping {domain: reference loss}.

    Other params: ``eta`` step size; ``ema`` smoothing of each domain's
    excess across steps (batches hold a few samples per domain); ``decay``
    (not in the paper; 0 is its update) shrinks the accumulated log-weights
    towards uniform each step, so the weights follow the recent excess
    rather than all of history. Collapse onto one domain (doremi issue #5)
    is bounded by ``smoothing``, ``floor`` and ``cap``.
    """

    defaults = {"eta": 0.1, "decay": 0.0, "ema": 0.9, "reference": "proxy",
                "ref_layers": 1, "ref_hidden": 64, "ref_steps": None}
    base_defaults = {**MixtureStrategy.base_defaults, "smoothing": 0.05}

    def __init__(self, domains, **params):
        super().__init__(domains, **params)
        ref = self.params["reference"]
        if not (ref in ("proxy", "bigram") or isinstance(ref, dict)):
            raise StrategyError(f"strategy doremi: reference must be 'proxy', 'bigram' or a mapping "
                                f"{{domain: loss}}, got {ref!r}")
        if isinstance(ref, dict) and set(self.domains) - set(ref):
            raise StrategyError(f"strategy doremi: reference must give a loss for each of "
                                f"{self.domains}, got {ref!r}")
        self.log_alpha = np.zeros(self.k)
        self.excess_ema = np.full(self.k, np.nan)
        self.ref: np.ndarray | None = None

    def _excess(self, batch, losses, signals) -> tuple[np.ndarray, np.ndarray]:
        """This batch's per-domain excess loss and which domains it holds."""
        ref = self.params["reference"]
        if ref == "proxy":
            params = {"layers": self.params["ref_layers"], "hidden": self.params["ref_hidden"],
                      "steps": self.params["ref_steps"]}
            excess = np.maximum(losses - signals.reference_model_loss(batch, params), 0.0)
            sums, counts = domain_means(batch, excess, self.k)
            return np.where(counts > 0, sums / np.maximum(counts, 1), 0.0), counts > 0
        if self.ref is None:
            self.ref = (np.asarray(signals.reference_domain_loss(), dtype=float) if ref == "bigram"
                        else np.array([float(ref[d]) for d in self.domains]))
        sums, counts = domain_means(batch, losses, self.k)
        mean = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
        return np.maximum(mean - self.ref, 0.0), counts > 0

    def update(self, batch, losses, signals):
        excess, seen = self._excess(batch, losses, signals)
        fresh = seen & np.isnan(self.excess_ema)
        self.excess_ema[fresh] = excess[fresh]
        a = self.params["ema"]
        old = seen & ~fresh
        self.excess_ema[old] = a * self.excess_ema[old] + (1 - a) * excess[old]
        lam = np.nan_to_num(self.excess_ema, nan=0.0)
        self.log_alpha = (1 - self.params["decay"]) * self.log_alpha + self.params["eta"] * lam
        self.log_alpha -= self.log_alpha.max()
        self.propose(np.exp(self.log_alpha))

    def state_dict(self):
        return {**super().state_dict(), "log_alpha": self.log_alpha.tolist(),
                "excess_ema": self.excess_ema.tolist(),
                "ref": None if self.ref is None else self.ref.tolist()}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.log_alpha = np.asarray(state["log_alpha"], dtype=float)
        self.excess_ema = np.asarray(state["excess_ema"], dtype=float)
        self.ref = None if state["ref"] is None else np.asarray(state["ref"], dtype=float)
