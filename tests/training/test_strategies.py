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
                 ref_domain=None):
        self.batch_size = batch_size
        self._infer, self._ref_sample = infer, ref_sample
        self._grads, self._val_grad, self._ref_domain = grads, val_grad, ref_domain

    def infer(self, batch):
        return np.asarray(self._infer, dtype=float)

    def reference_sample_loss(self, batch):
        return np.asarray(self._ref_sample, dtype=float)

    def reference_domain_loss(self):
        return np.asarray(self._ref_domain, dtype=float)

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
    assert set(strategy_names()) >= {"uniform", "static", "doremi", "odm", "ado",
                                     "loss_reweight", "loss_select", "grad_select"}
    with pytest.raises(StrategyError, match="unknown strategy 'nope'; known: .*doremi"):
        strategy_class("nope")
    with pytest.raises(StrategyError, match="unknown param.*'etaa'.*accepted"):
        build_mixer({"strategy": "doremi", "params": {"etaa": 1}}, DOMS)


def test_smoothing_and_floor():
    s = strategy_class("doremi")(DOMS, smoothing=0.5, floor=0.1)
    w = s.propose(np.array([1.0, 0.0, 0.0]))
    # EMA with the uniform start, then the floor map f + (1 - K f) w.
    ema = 0.5 * np.full(3, 1 / 3) + 0.5 * np.array([1.0, 0, 0])
    np.testing.assert_allclose(w, 0.1 + 0.7 * ema)
    assert w.min() >= 0.1 - 1e-12 and math.isclose(w.sum(), 1)
    with pytest.raises(StrategyError, match="floor must be in"):
        strategy_class("doremi")(DOMS, floor=0.5)
    with pytest.raises(StrategyError, match="smoothing must be in"):
        strategy_class("doremi")(DOMS, smoothing=1.0)


def test_uniform_never_moves():
    s = strategy_class("uniform")(DOMS)
    s.update(batch_of([0, 0, 1]), np.array([9.0, 9.0, 1.0]), FixedSignals())
    np.testing.assert_allclose(s.domain_weights(None), np.full(3, 1 / 3))


def test_static_normalises_and_checks_domains():
    s = strategy_class("static")(DOMS, weights={"a": 2, "b": 1, "c": 1})
    np.testing.assert_allclose(s.domain_weights(None), [0.5, 0.25, 0.25])
    with pytest.raises(StrategyError, match="weight for each of"):
        strategy_class("static")(DOMS, weights={"a": 1})


def test_doremi_exponentiated_gradient_on_excess_loss():
    s = strategy_class("doremi")(DOMS, eta=0.5, ema=0.0, floor=0.0, decay=0.05,
                                 reference={"a": 2.0, "b": 2.0, "c": 5.0})
    # a: 1 nat above its reference, b: at it, c: below it (clipped to 0).
    s.update(batch_of([0, 1, 2]), np.array([3.0, 2.0, 4.0]), FixedSignals())
    expect = np.exp([0.5, 0.0, 0.0])
    np.testing.assert_allclose(s.domain_weights(None), expect / expect.sum())
    # decay pulls the accumulated log-weights towards uniform before each step.
    s.update(batch_of([0, 1, 2]), np.array([3.0, 2.0, 4.0]), FixedSignals())
    expect = np.exp([0.95 * 0.5 + 0.5, 0.0, 0.0])
    np.testing.assert_allclose(s.domain_weights(None), expect / expect.sum())
    # The bigram default asks the trainer for its reference losses.
    t = strategy_class("doremi")(DOMS, ema=0.0, floor=0.0)
    t.update(batch_of([0, 1, 2]), np.array([3.0, 3.0, 3.0]), FixedSignals(ref_domain=[3, 2, 3]))
    w = t.domain_weights(None)
    assert w[1] > w[0] == pytest.approx(w[2])


def test_odm_exp3_rewards_loss_with_importance_weights():
    s = strategy_class("odm")(DOMS, reward_ema=0.0)
    sig = FixedSignals()
    s.update(batch_of([0, 1, 2]), np.array([6.0, 3.0, 3.0]), sig)
    w = s.domain_weights(None)
    eps1 = min(1 / 3, math.sqrt(math.log(3) / 3))
    # reward = sum loss / (n * pi) with pi = 1/3: (6, 3, 3); the first update
    # uses eps_0 = 1/K, then pi = (1 - K eps_1) w / sum w + eps_1.
    lw = np.array([6.0, 3.0, 3.0]) * (1 / 3) / 3
    soft = np.exp(lw - lw.max()) / np.exp(lw - lw.max()).sum()
    np.testing.assert_allclose(w, (1 - 3 * eps1) * soft + eps1)
    for _ in range(50):
        s.update(batch_of([0, 1, 2]), np.array([6.0, 3.0, 3.0]), sig)
    w = s.domain_weights(None)
    assert w[0] > 0.5 and w[1] == pytest.approx(w[2]) and w[1] > 0


def test_ado_power_law_fit_and_weights():
    n = np.arange(1, 200, dtype=float) * 8
    eps, beta, alpha = fit_power_law(n, 2.0 + 5.0 * n ** -0.5)
    assert abs(alpha - 0.5) < 0.1 and abs(eps - 2.0) < 0.3
    s = strategy_class("ado")(DOMS, warmup=5, fit_every=5, smoothing=0.0, floor=0.0)
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
