"""ADO: domain weights from per-domain scaling laws fitted online."""
from __future__ import annotations

import numpy as np

from training.mixer.base import MixtureStrategy, domain_means, register_strategy


def fit_power_law(n: np.ndarray, loss: np.ndarray) -> tuple[float, float, float]:
    """Fit ``loss = eps + beta * n**-alpha``; returns (eps, beta, alpha).

    A grid over the irreducible term ``eps`` with a log-log least-squares line
    for the rest: a closed-form inner fit keeps this robust on a few dozen
    noisy points, where a generic non-linear solver needs starting values.
    """
    lo = float(loss.min())
    best = (np.inf, 0.0, 0.0, 0.0)
    x = np.log(n)
    for eps in np.linspace(0.0, lo * 0.99, 24):
        y = np.log(loss - eps)
        slope, icpt = np.polyfit(x, y, 1)
        alpha = max(-slope, 0.0)
        pred = eps + np.exp(icpt) * n ** -alpha
        sse = float(((pred - loss) ** 2).sum())
        if sse < best[0]:
            best = (sse, eps, float(np.exp(icpt)), alpha)
    return best[1], best[2], best[3]


@register_strategy("ado")
class ADO(MixtureStrategy):
    """Jiang et al., 2024, "Adaptive Data Optimization: Dynamic Sample
    Selection with Scaling Laws", arXiv:2410.11820: fit, per domain, the
    training loss as a power law of the number of samples seen from it,
    ``L_k(n) = eps_k + beta_k n^-alpha_k``, and weight domains by how fast
    their loss still falls, ``rho_k ∝ prior_k * alpha_k beta_k n_k^-alpha_k``
    (= -n dL/dn, the loss gained per doubling of that domain's data), with
    temporal smoothing. A domain whose loss has flattened (noise, or learned)
    loses weight; one still improving gains.

    Params: ``warmup`` steps on the prior before the first fit; ``fit_every``
    steps between refits; ``history`` points kept per domain.
    """

    base_defaults = {"momentum": 0.5, "smoothing": 0.0, "floor": None, "cap": None}
    defaults = {"warmup": 20, "fit_every": 10, "history": 200}

    def __init__(self, domains, **params):
        super().__init__(domains, **params)
        self.seen = np.zeros(self.k)
        self.points: list[list[tuple[float, float]]] = [[] for _ in range(self.k)]
        self.t = 0

    def update(self, batch, losses, signals):
        sums, counts = domain_means(batch, losses, self.k)
        self.seen += counts
        for d in np.flatnonzero(counts):
            pts = self.points[d]
            pts.append((float(self.seen[d]), float(sums[d] / counts[d])))
            del pts[:-self.params["history"]]
        self.t += 1
        if self.t < self.params["warmup"] or self.t % self.params["fit_every"]:
            return
        speed = np.zeros(self.k)
        for d, pts in enumerate(self.points):
            if len(pts) < 4:
                speed[d] = np.nan
                continue
            n, loss = np.array(pts).T
            _, beta, alpha = fit_power_law(n, loss)
            speed[d] = alpha * beta * self.seen[d] ** -alpha
        # Domains without enough points yet keep the mean speed: no evidence
        # either way.
        known = ~np.isnan(speed)
        speed[~known] = speed[known].mean() if known.any() else 1.0
        self.propose(speed)

    def state_dict(self):
        return {**super().state_dict(), "seen": self.seen.tolist(),
                "points": [[list(p) for p in pts] for pts in self.points], "t": self.t}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.seen = np.asarray(state["seen"], dtype=float)
        self.points = [[tuple(p) for p in pts] for pts in state["points"]]
        self.t = int(state["t"])
