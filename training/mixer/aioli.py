"""Aioli: online mixing from a linear dynamic mixing law learned during training."""
from __future__ import annotations

import numpy as np

from training.mixer.base import MixtureStrategy, StrategyError, register_strategy


def mixing_matrix(k: int, one_hot_factor: float) -> np.ndarray:
    """Row ``j``: the exploration mixture for domain ``j`` (``one_hot_factor``
    on ``j``, the rest spread evenly)."""
    if k == 1:
        return np.ones((1, 1))
    m = np.full((k, k), (1 - one_hot_factor) / (k - 1))
    np.fill_diagonal(m, one_hot_factor)
    return m


def solve_interactions(delta: np.ndarray, one_hot_factor: float, diagonal: bool = False) -> np.ndarray:
    """``A`` from the loss drops ``delta[i, j]`` (domain ``i``'s holdout loss
    drop while training on exploration mixture ``j``).

    The linear dynamic mixing law says ``delta[i, j] = A[i] . P[j]`` for the
    exploration mixtures ``P`` (:func:`mixing_matrix`), so each row of ``A``
    solves ``P a = delta[i]``; with pure one-hot exploration ``P = I`` and
    ``A = delta``. ``diagonal`` keeps only self-interactions.
    """
    k = delta.shape[0]
    if diagonal:
        return np.diag(np.diag(delta) / one_hot_factor)
    if one_hot_factor == 1:
        return delta.copy()
    p = mixing_matrix(k, one_hot_factor)
    return np.stack([np.linalg.solve(p, row) for row in delta])


@register_strategy("aioli")
class Aioli(MixtureStrategy):
    """Chen et al., 2024, "Aioli: A Unified Optimization Framework for
    Language Model Data Mixing", arXiv:2411.05735 (Algorithm 1, Aioli).

    Every mixing method, the paper shows, minimises total loss under a
    *mixing law*; Aioli uses the linear dynamic law ``L_{t+1} = L_t - A_t
    p_t`` and estimates ``A_t`` online instead of assuming it. Training is
    split into rounds of ``update_steps`` steps. Each round starts with
    LearnParams: for ``lp_rounds`` sweeps over the domains in random order,
    train ``lp_steps`` steps on an exploration mixture that puts
    ``one_hot_factor`` of the weight on one domain, and record the drop of
    every domain's loss on the selection holdout; solving those drops
    against the exploration mixtures gives ``A_t``
    (:func:`solve_interactions`). Optionally (``normalize``) ``A_t`` is
    shifted to be non-negative and scaled to sum 1, and smoothed across
    rounds (``ema``). The mixture for the rest of the round is ``p ∝ prior
    * exp(eta' * sum_i A[i, :])`` (with ``ema``; without it the update
    multiplies the previous weights, as their code does), where ``eta' =
    eta * K`` for a normalised A (our adaptation: its column sums average
    1/K, so this keeps ``eta``'s meaning for any number of domains) and
    ``eta`` otherwise. Exploration steps
    are real training steps and count in the budget, as in the paper; the
    holdout evaluations count as the strategy's overhead. ``warmup`` steps
    run the prior (uniform) before the first round.

    The paper's own defaults (5,000-40,000 steps: ``update_steps`` 250-1000,
    ``lp_steps`` 6, ``lp_rounds`` 4, ``one_hot_factor`` 0.5, ``ema`` 0.5,
    ``eta`` 0.1 on a normalised A) are scaled down here for runs of a few
    hundred steps. The mixture then passes through the base class's
    ``smoothing``, ``floor`` and ``cap``; the exploration mixtures do not
    (they are the measurement).
    """

    defaults = {"eta": 1.0, "update_steps": 50, "lp_rounds": 1, "lp_steps": 2,
                "one_hot_factor": 0.5, "ema": 0.5, "normalize": True, "diagonal": False,
                "warmup": 10, "val_per_domain": 8, "seed": 0}

    def __init__(self, domains, **params):
        super().__init__(domains, **params)
        p = self.params
        lp = self.k * p["lp_rounds"] * p["lp_steps"]
        if p["update_steps"] <= lp:
            raise StrategyError(f"strategy aioli: update_steps ({p['update_steps']}) must exceed the "
                                f"exploration steps per round, K * lp_rounds * lp_steps = {lp}")
        if not 1 / self.k <= p["one_hot_factor"] <= 1:
            raise StrategyError(f"strategy aioli: one_hot_factor must be in [1/{self.k}, 1]")
        if p["ema"] is not None and not 0 <= p["ema"] < 1:
            raise StrategyError("strategy aioli: ema must be null or in [0, 1)")
        self.explore = mixing_matrix(self.k, p["one_hot_factor"])
        self.rng = np.random.default_rng(p["seed"])
        self.phase = "warmup" if p["warmup"] > 0 else "start"
        self.left = p["warmup"]
        self.order: list[int] = []
        self.delta = np.zeros((self.k, self.k))
        self.prev_loss: np.ndarray | None = None
        self.graph: np.ndarray | None = None
        self.log_w = np.zeros(self.k)
        self.rounds = 0

    def _holdout_loss(self, signals) -> np.ndarray:
        batch = signals.val_batch(per_domain=self.params["val_per_domain"])
        loss = signals.infer(batch)
        return np.bincount(batch.domains, weights=loss, minlength=self.k) / np.maximum(
            np.bincount(batch.domains, minlength=self.k), 1)

    def _start_round(self, signals) -> None:
        self.prev_loss = self._holdout_loss(signals)
        self.order = np.concatenate([self.rng.permutation(self.k)
                                     for _ in range(self.params["lp_rounds"])]).tolist()
        self.delta = np.zeros((self.k, self.k))
        self.phase, self.left = "explore", self.params["lp_steps"]

    def _finish_round(self) -> None:
        p = self.params
        a = solve_interactions(self.delta / p["lp_rounds"], p["one_hot_factor"], p["diagonal"])
        if p["normalize"]:
            a = a - min(a.min(), 0.0)
            a = a / a.sum() if a.sum() > 0 else np.full_like(a, 1 / a.size)
        self.rounds += 1
        # A normalised A sums to 1, so its column sums average 1/K: scaling
        # the step by K gives eta the same meaning for any number of domains.
        eta = p["eta"] * (self.k if p["normalize"] else 1.0)
        if p["ema"] is None:
            self.log_w = self.log_w + eta * a.sum(0)
        else:
            self.graph = a if self.graph is None else (1 - p["ema"]) * a + p["ema"] * self.graph
            self.log_w = eta * self.graph.sum(0)
        w = np.exp(self.log_w - self.log_w.max())
        self.propose(w)
        self.phase = "exploit"
        self.left = p["update_steps"] - self.k * p["lp_rounds"] * p["lp_steps"]

    def domain_weights(self, signals):
        if self.phase == "explore":
            return self.explore[self.order[0]]
        return self.weights

    def update(self, batch, losses, signals):
        if self.phase == "start":
            self._start_round(signals)
            return
        self.left -= 1
        if self.left > 0:
            return
        if self.phase == "explore":
            loss = self._holdout_loss(signals)
            self.delta[:, self.order.pop(0)] += self.prev_loss - loss
            self.prev_loss = loss
            if self.order:
                self.left = self.params["lp_steps"]
            else:
                self._finish_round()
        else:  # warmup or exploit ended: the next step starts a round
            self._start_round(signals)

    def state_dict(self):
        return {**super().state_dict(), "rng": self.rng.bit_generator.state, "phase": self.phase,
                "left": self.left, "order": list(self.order), "delta": self.delta.tolist(),
                "prev_loss": None if self.prev_loss is None else self.prev_loss.tolist(),
                "graph": None if self.graph is None else self.graph.tolist(),
                "log_w": self.log_w.tolist(), "rounds": self.rounds}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.rng.bit_generator.state = state["rng"]
        self.phase, self.left = state["phase"], int(state["left"])
        self.order = [int(i) for i in state["order"]]
        self.delta = np.asarray(state["delta"], dtype=float)
        self.prev_loss = None if state["prev_loss"] is None else np.asarray(state["prev_loss"])
        self.graph = None if state["graph"] is None else np.asarray(state["graph"])
        self.log_w = np.asarray(state["log_w"], dtype=float)
        self.rounds = int(state["rounds"])
