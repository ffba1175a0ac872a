"""Update rules of every strategy, on fixed signals (no model needed).

Each test feeds a strategy known losses or gradients and checks the rule of
the paper it cites; test_training.py runs every strategy with the real
trainer.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from training.mixer import Batch, StrategyError, build_mixer, strategy_names
from training.mixer.ado import fit_power_law
from training.mixer.base import strategy_class

DOMS = ["a", "b", "c"]


class FixedSignals:
    """Trainer signals with values chosen by the test."""

    domains = DOMS
    step = 0

    def __init__(self, batch_size=2, infer=None, ref_sample=None, grads=None, val_grad=None,
                 ref_domain=None, ref_model=None):
        self.batch_size = batch_size
        self._infer, self._ref_sample = infer, ref_sample
        self._grads, self._val_grad, self._ref_domain = grads, val_grad, ref_domain
        self._ref_model = ref_model

    def infer(self, batch):
        return np.asarray(self._infer, dtype=float)

    def reference_sample_loss(self, batch):
        return np.asarray(self._ref_sample, dtype=float)

    def reference_domain_loss(self):
        return np.asarray(self._ref_domain, dtype=float)

    def reference_model_loss(self, batch, params):
        return np.asarray(self._ref_model, dtype=float)

    def val_batch(self, domains=None, per_domain=8):
        return batch_of([0] * 2, is_val=True)

    def gradients(self, batch):
        return np.asarray(self._val_grad if batch.is_val else self._grads, dtype=float)


def batch_of(domains, is_val=False):
    b = Batch(torch.zeros(len(domains), 5, dtype=torch.long), np.asarray(domains),
              np.arange(len(domains)))
    b.is_val = is_val
    return b


def test_registry_lists_every_shipped_strategy():
    assert set(strategy_names()) >= {"uniform", "static", "doremi", "odm", "ado", "aioli",
                                     "loss_reweight", "loss_select", "grad_select"}
    with pytest.raises(StrategyError, match="unknown strategy 'nope'; known: .*doremi"):
        strategy_class("nope")
    with pytest.raises(StrategyError, match="unknown param.*'etaa'.*accepted"):
        build_mixer({"strategy": "doremi", "params": {"etaa": 1}}, DOMS)


def test_momentum_smoothing_floor_and_cap():
    s = strategy_class("odm")(DOMS, momentum=0.5, smoothing=0.3, floor=0.1, cap=0.5)
    w = s.propose(np.array([1.0, 0.0, 0.0]))
    # momentum with the uniform start, then toward uniform: both keep order.
    step = 0.5 * np.full(3, 1 / 3) + 0.5 * np.array([1.0, 0, 0])
    step = 0.7 * step + 0.3 / 3
    assert step[0] > 0.5          # the cap binds: 0.5, the rest split in proportion
    np.testing.assert_allclose(w, [0.5, 0.25, 0.25])
    s2 = strategy_class("odm")(["a", "b", "c", "d"], floor=0.1, cap=1.0)
    w = s2.propose(np.array([10.0, 5.0, 0.0, 0.0]))
    np.testing.assert_allclose(w, [0.8 * 2 / 3, 0.8 / 3, 0.1, 0.1])
    assert math.isclose(w.sum(), 1)
    # Unset floor and cap scale with K: a fifth and three times the uniform share.
    auto = strategy_class("doremi")(["a", "b", "c", "d", "e"])
    assert auto.params["floor"] == pytest.approx(0.04) and auto.params["cap"] == pytest.approx(0.6)
    w = auto.propose(np.array([1.0, 0, 0, 0, 0]))
    assert w.min() >= 0.04 - 1e-12 and w.max() <= 0.6 + 1e-12
    with pytest.raises(StrategyError, match="floor must be in"):
        strategy_class("doremi")(DOMS, floor=0.5)
    with pytest.raises(StrategyError, match="cap must be in"):
        strategy_class("doremi")(DOMS, cap=0.2)
    with pytest.raises(StrategyError, match="momentum must be in"):
        strategy_class("doremi")(DOMS, momentum=1.0)
    with pytest.raises(StrategyError, match="smoothing must be in"):
        strategy_class("doremi")(DOMS, smoothing=1.5)


def test_bound_keeps_order_and_limits():
    from training.mixer.base import bound

    rng = np.random.default_rng(0)
    for _ in range(200):
        k = int(rng.integers(2, 8))
        floor, cap = rng.uniform(0, 1 / k), rng.uniform(1 / k, 1)
        w = bound(rng.dirichlet(np.full(k, 0.3)), floor, cap)
        assert w.sum() == pytest.approx(1) and w.min() >= floor - 1e-9 and w.max() <= cap + 1e-9


def test_uniform_never_moves():
    s = strategy_class("uniform")(DOMS)
    s.update(batch_of([0, 0, 1]), np.array([9.0, 9.0, 1.0]), FixedSignals())
    np.testing.assert_allclose(s.domain_weights(None), np.full(3, 1 / 3))


def test_static_normalises_and_checks_domains():
    s = strategy_class("static")(DOMS, weights={"a": 2, "b": 1, "c": 0})
    np.testing.assert_allclose(s.domain_weights(None), [2 / 3, 1 / 3, 0])
    with pytest.raises(StrategyError, match="weight for each of"):
        strategy_class("static")(DOMS, weights={"a": 1})


def test_doremi_exponentiated_gradient_on_excess_over_the_reference_model():
    s = strategy_class("doremi")(DOMS, eta=0.5, ema=0.0, floor=0.0, cap=1.0, smoothing=0.0,
                                 decay=0.05)
    # Per-sample excess over the reference model, clipped at 0, averaged per domain:
    # a: (1 + 0.5) / 2, b: 0, c: below its reference (clipped).
    losses = np.array([3.0, 2.5, 2.0, 1.0])
    sig = FixedSignals(ref_model=[2.0, 2.0, 2.0, 1.5])
    s.update(batch_of([0, 0, 1, 2]), losses, sig)
    expect = np.exp([0.5 * 0.75, 0.0, 0.0])
    np.testing.assert_allclose(s.domain_weights(None), expect / expect.sum())
    # decay pulls the accumulated log-weights towards uniform before each step.
    s.update(batch_of([0, 0, 1, 2]), losses, sig)
    expect = np.exp([0.95 * 0.375 + 0.375, 0.0, 0.0])
    np.testing.assert_allclose(s.domain_weights(None), expect / expect.sum())
    # smoothing toward uniform (the paper's c): w = (1 - c) w + c / K.
    t = strategy_class("doremi")(DOMS, eta=0.5, ema=0.0, floor=0.0, cap=1.0, smoothing=0.2)
    t.update(batch_of([0, 0, 1, 2]), losses, sig)
    raw = np.exp([0.375, 0.0, 0.0])
    np.testing.assert_allclose(t.domain_weights(None), 0.8 * raw / raw.sum() + 0.2 / 3)
    # The bigram stand-in compares a domain's loss with its holdout reference.
    b = strategy_class("doremi")(DOMS, ema=0.0, floor=0.0, reference="bigram")
    b.update(batch_of([0, 1, 2]), np.array([3.0, 3.0, 3.0]), FixedSignals(ref_domain=[3, 2, 3]))
    w = b.domain_weights(None)
    assert w[1] > w[0] == pytest.approx(w[2])
    with pytest.raises(StrategyError, match="reference must be"):
        strategy_class("doremi")(DOMS, reference="summary.json")


def test_doremi_does_not_collapse_on_a_persistent_excess():
    s = strategy_class("doremi")(["a", "b", "c", "d"])     # defaults: floor K/5, cap 3/K
    sig = FixedSignals(ref_model=[1.0] * 8)
    for _ in range(500):
        s.update(batch_of([0, 0, 1, 1, 2, 2, 3, 3]), np.array([4.0, 4.0] + [1.0] * 6), sig)
    w = s.domain_weights(None)
    assert w[0] == pytest.approx(0.75) and w.min() >= 0.05 - 1e-9


def test_odm_exp3_with_normalised_reward():
    s = strategy_class("odm")(DOMS, reward_ema=0.0, floor=0.0, cap=1.0)
    sig = FixedSignals()
    s.update(batch_of([0, 1, 2]), np.array([6.0, 3.0, 3.0]), sig)
    w = s.domain_weights(None)
    eps1 = min(1 / 3, math.sqrt(math.log(3) / 3))
    # reward = (loss / largest loss seen) summed per domain / (n * pi), pi = 1/3:
    # (1, 0.5, 0.5); the first update uses eps_0 = 1/K.
    lw = np.array([1.0, 0.5, 0.5]) * (1 / 3) / 3
    soft = np.exp(lw - lw.max()) / np.exp(lw - lw.max()).sum()
    np.testing.assert_allclose(w, (1 - 3 * eps1) * soft + eps1)
    for _ in range(300):
        s.update(batch_of([0, 1, 2]), np.array([6.0, 3.0, 3.0]), sig)
    w = s.domain_weights(None)
    # It prefers the high-loss arm, but a reward in [0, 1] cannot run away.
    assert 0.4 < w[0] < 0.9 and w[1] == pytest.approx(w[2]) and w[1] > 0.05


def test_aioli_learns_interactions_and_mixes_by_them():
    from training.mixer.aioli import mixing_matrix, solve_interactions

    # The linear law: a drop matrix made from a known A is solved back exactly.
    a_true = np.array([[0.3, 0.05, 0.0], [0.02, 0.2, 0.0], [0.0, 0.0, 0.01]])
    p = mixing_matrix(3, 0.5)
    np.testing.assert_allclose(p.sum(1), 1) and np.testing.assert_allclose(np.diag(p), 0.5)
    delta = a_true @ p.T                       # delta[i, j] = A[i] . P[j]
    np.testing.assert_allclose(solve_interactions(delta, 0.5), a_true, atol=1e-12)
    np.testing.assert_allclose(solve_interactions(delta, 1.0), delta)

    class LawSignals(FixedSignals):
        """Holdout loss that falls by A @ p for each step on mixture p."""

        def __init__(self):
            super().__init__()
            self.loss = np.array([4.0, 4.0, 4.0])

        def val_batch(self, domains=None, per_domain=8):
            return batch_of([0, 1, 2])

        def infer(self, batch):
            return self.loss.copy()

    s = strategy_class("aioli")(DOMS, update_steps=10, lp_steps=1, warmup=2, eta=2.0,
                                ema=None, floor=0.0, cap=1.0)
    sig = LawSignals()
    seen = []
    for _ in range(22):
        w = np.asarray(s.domain_weights(sig))
        seen.append(w.round(3).tolist())
        sig.loss = sig.loss - a_true @ w
        s.update(batch_of([0]), np.array([1.0]), sig)
    # Warmup on the prior, then one exploration step per domain (one_hot 0.5).
    assert seen[0] == seen[1] == [0.333, 0.333, 0.333]
    assert sorted(map(tuple, seen[2:5])) == sorted(map(tuple, np.round(p, 3).tolist()))
    # After the round: weights ∝ exp(eta * K * column sums of the normalised A).
    a_norm = a_true / a_true.sum()
    expect = np.exp(2.0 * 3 * a_norm.sum(0))
    np.testing.assert_allclose(seen[5], (expect / expect.sum()).round(3), atol=2e-3)
    assert seen[5][0] > seen[5][1] > seen[5][2]
    # The next round explores again, and the update multiplies (ema=None).
    assert sorted(map(tuple, seen[12:15])) == sorted(map(tuple, np.round(p, 3).tolist()))
    assert s.rounds == 2 and seen[15][0] > seen[5][0]
    # State round-trips mid-exploration.
    t = strategy_class("aioli")(DOMS, update_steps=10, lp_steps=1, warmup=2, eta=2.0, ema=None,
                                floor=0.0, cap=1.0)
    t.load_state_dict(s.state_dict())
    for m in (s, t):
        m.update(batch_of([0]), np.array([1.0]), sig)
    np.testing.assert_array_equal(s.domain_weights(sig), t.domain_weights(sig))
    with pytest.raises(StrategyError, match="update_steps .* must exceed"):
        strategy_class("aioli")(DOMS, update_steps=3, lp_steps=1)


def test_ado_power_law_fit_and_weights():
    n = np.arange(1, 200, dtype=float) * 8
    eps, beta, alpha = fit_power_law(n, 2.0 + 5.0 * n ** -0.5)
    assert abs(alpha - 0.5) < 0.1 and abs(eps - 2.0) < 0.3
    s = strategy_class("ado")(DOMS, warmup=5, fit_every=5, momentum=0.0, floor=0.0)
    sig = FixedSignals()
    for t in range(1, 41):
        seen = 4 * t
        # a keeps falling, b is flat (noise or learnt), c falls slowly.
        losses = np.array([1 + 8 * seen ** -0.5, 5.0 + 0.001 * np.sin(t), 1 + 2 * seen ** -0.5])
        s.update(batch_of([0] * 4 + [1] * 4 + [2] * 4), np.repeat(losses, 4), sig)
    w = s.domain_weights(None)
    assert w[0] > w[2] > w[1]


def test_loss_reweight_directions():
    losses = np.array([1.0, 2.0, 3.0, 10.0])
    hard = strategy_class("loss_reweight")(DOMS).sample_weights(batch_of([0] * 4), losses, None)
    easy = strategy_class("loss_reweight")(DOMS, direction="easy").sample_weights(
        batch_of([0] * 4), losses, None)
    assert hard.mean() == pytest.approx(1) and easy.mean() == pytest.approx(1)
    assert list(np.argsort(hard)) == [0, 1, 2, 3] and list(np.argsort(easy)) == [3, 2, 1, 0]
    z = (losses - losses.mean()) / losses.std()
    raw = np.exp(z)
    clipped = np.clip(raw / raw.mean(), 0.2, 3.0)
    np.testing.assert_allclose(hard, clipped / clipped.mean(), rtol=1e-6)


def test_loss_select_reducible_and_plain_loss():
    cand = batch_of([0, 1, 2, 0])
    loss = [5.0, 4.0, 3.0, 2.0]
    ref = [4.9, 1.0, 2.0, 2.0]   # sample 0: high loss but irreducible (noise)
    sig = FixedSignals(batch_size=2, infer=loss, ref_sample=ref)
    rho = strategy_class("loss_select")(DOMS)
    assert rho.candidate_factor == 2.0
    assert rho.select(cand, sig).tolist() == [False, True, True, False]
    plain = strategy_class("loss_select")(DOMS, score="loss")
    assert plain.select(cand, sig).tolist() == [True, True, False, False]


def test_grad_select_prefers_alignment_with_validation_gradient():
    val = np.array([[1.0, 0.0], [1.0, 0.2]])          # mean direction ~ +x
    cand = np.array([[-1.0, 0.0], [0.0, 1.0], [2.0, 0.1], [0.5, 0.4]])
    sig = FixedSignals(batch_size=2, grads=cand, val_grad=val)
    s = strategy_class("grad_select")(DOMS, refresh=3)
    assert s.select(batch_of([0, 1, 2, 0]), sig).tolist() == [False, False, True, True]
    assert s.state_dict()["age"] == 1


def test_composition_rules():
    stack = build_mixer({"strategy": [{"strategy": "doremi"},
                                      {"strategy": "loss_reweight", "params": {"direction": "easy"}},
                                      {"strategy": "loss_select"}]}, DOMS)
    assert stack.candidate_factor == 2.0 and stack.names == ["doremi", "loss_reweight", "loss_select"]
    w = stack.sample_weights(batch_of([0, 1]), np.array([1.0, 3.0]), None)
    assert w[0] > w[1] and w.mean() == pytest.approx(1)
    with pytest.raises(StrategyError, match="all return domain weights"):
        build_mixer({"strategy": [{"strategy": "doremi"}, {"strategy": "odm"}]}, DOMS)
    with pytest.raises(StrategyError, match="all return a selection mask"):
        build_mixer({"strategy": [{"strategy": "loss_select"}, {"strategy": "grad_select"}]}, DOMS)
    # Only reweighting: the mixture stays uniform.
    only = build_mixer({"strategy": "loss_reweight"}, DOMS)
    np.testing.assert_allclose(only.domain_weights(None), np.full(3, 1 / 3))


def test_state_round_trip_continues_identically():
    sig = FixedSignals(ref_domain=[1.0, 1.0, 1.0])
    a = build_mixer({"strategy": "odm"}, DOMS)
    b = build_mixer({"strategy": "odm"}, DOMS)
    for losses in ([3.0, 2.0, 1.0], [2.0, 2.5, 1.0]):
        a.update(batch_of([0, 1, 2]), np.array(losses), sig)
    b.load_state_dict(a.state_dict())
    for m in (a, b):
        m.update(batch_of([0, 1, 2]), np.array([1.0, 4.0, 2.0]), sig)
    np.testing.assert_array_equal(a.domain_weights(sig), b.domain_weights(sig))


def test_bigram_reference_scores_structure_below_shuffled_text():
    from training.reference import PRIOR, Bigram

    rng = np.random.default_rng(0)
    stream = np.tile(rng.permutation(50), 40)            # a fixed successor per token
    windows = stream[: 33 * 60].reshape(60, 33)
    shuffled = rng.permutation(windows.reshape(-1)).reshape(60, 33)
    model = Bigram(windows, 64)
    assert model.sample_loss(windows).mean() < 0.5 < 3.0 < model.sample_loss(shuffled).mean()
    # The smoothed estimate, written out for one pair.
    counts = np.zeros((64, 64))
    np.add.at(counts, (windows[:, :-1].ravel(), windows[:, 1:].ravel()), 1)
    uni = np.bincount(windows.ravel(), minlength=64) + 0.5
    uni = uni / uni.sum()
    a, b = windows[0, 0], windows[0, 1]
    p = (counts[a, b] + PRIOR * uni[b]) / (counts[a].sum() + PRIOR)
    w = np.array([[a, b]])
    assert model.sample_loss(w)[0] == pytest.approx(-np.log(p))


def test_systematic_sampling_keeps_counts_within_one_of_their_share():
    from training.sampler import DomainSampler

    s = DomainSampler([50, 50, 50, 50], seed=3)
    w = np.array([0.55, 0.3, 0.15, 0.0])
    total = np.zeros(4)
    for _ in range(400):
        doms, idx = s.draw(16, w)
        counts = np.bincount(doms, minlength=4)
        assert (np.abs(counts - 16 * w) < 1).all() and counts[3] == 0
        total += counts
    np.testing.assert_allclose(total / total.sum(), w, atol=0.005)   # unbiased
    # Each domain walks its own shuffled order: every window once per epoch.
    s2 = DomainSampler([7], seed=0)
    seen = np.concatenate([s2.draw(7, np.array([1.0]))[1] for _ in range(1)])
    assert sorted(seen.tolist()) == list(range(7))
