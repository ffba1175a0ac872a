"""ODM: online data mixing as a multi-armed bandit (EXP3) rewarded by loss."""
from __future__ import annotations

import math

import numpy as np

from training.mixer.base import MixtureStrategy, domain_means, register_strategy


@register_strategy("odm")
class ODM(MixtureStrategy):
    """Albalak et al., 2023, "Efficient Online Data Mixing For Language Model
    Pre-Training", arXiv:2312.02406 (Algorithm 1): domains are arms of EXP3;
    the reward of a domain is its training loss, importance-weighted by the
    probability of drawing it and smoothed, ``R_i <- a R_i + (1 - a) r_i /
    pi_i``; ``w_i <- w_i exp(eps_{t-1} R_i / K)``; ``pi = (1 - K eps_t)
    w / sum(w) + eps_t`` with ``eps_t = min(1/K, sqrt(ln K / (K t)))``.

    The reward is normalised to [0, 1], as EXP3's regret bound assumes:
    ``r_i`` is the domain's mean loss divided by the largest per-sample loss
    seen so far. A raw loss of several nats, divided by ``pi_i``, makes the
    exponent grow by whole units per step and EXP3 collapses onto one arm
    within a few hundred steps (the behaviour this replaces). Loss as
    reward still favours domains the model finds hard, noise included;
    ``floor`` and ``cap`` bound that, and the benchmark reports it.
    """

    defaults = {"reward_ema": 0.9}

    def __init__(self, domains, **params):
        super().__init__(domains, **params)
        self.log_w = np.zeros(self.k)
        self.reward = np.zeros(self.k)
        self.scale = 0.0
        self.t = 0

    def _eps(self, t: int) -> float:
        return min(1 / self.k, math.sqrt(math.log(self.k) / (self.k * max(t, 1))))

    def update(self, batch, losses, signals):
        self.scale = max(self.scale, float(np.max(losses)))
        sums, _ = domain_means(batch, losses / self.scale, self.k)
        # Per-sample draws: sum of rewards / (n * pi) estimates each domain's
        # mean reward without bias, also for domains absent from this batch.
        estimate = sums / (len(batch) * np.maximum(self.weights, 1e-12))
        a = self.params["reward_ema"]
        self.reward = a * self.reward + (1 - a) * estimate
        self.t += 1
        self.log_w += self._eps(self.t - 1) * self.reward / self.k
        self.log_w -= self.log_w.max()
        w = np.exp(self.log_w)
        eps = self._eps(self.t)
        self.propose((1 - self.k * eps) * w / w.sum() + eps)

    def state_dict(self):
        return {**super().state_dict(), "log_w": self.log_w.tolist(),
                "reward": self.reward.tolist(), "scale": self.scale, "t": self.t}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.log_w = np.asarray(state["log_w"], dtype=float)
        self.reward = np.asarray(state["reward"], dtype=float)
        self.scale = float(state["scale"])
        self.t = int(state["t"])
