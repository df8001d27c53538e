"""Tests of pinnlib.balancing against NumPy re-derivations of the rules in REFERENCE.md.

Every balancer is fed synthetic loss sequences (and, for the gradient-based ones, synthetic
per-term gradient lists) and its weights are compared step by step with an independent
NumPy implementation of the published rule. Hypothesis checks the properties every scheme
must have (finite positive weights, softmax weights summing to the number of terms, scale
invariance of ReLoBRaLo, survival of extreme loss ratios).
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import example, given
from hypothesis import strategies as st

import pinnlib.balancing as balancing
from pinnlib import (
    Fixed,
    GlobalGradNorm,
    GradNorm,
    HomoscedasticUncertainty,
    LRAnnealing,
    ReLoBRaLo,
    SoftAdapt,
    Sum,
)

EPS = 1e-7


# -- NumPy re-derivations ---------------------------------------------------------------------
def np_lhat(losses, reference, temperature, eps, n):
    """n * softmax(L(t) / (T L(t') + eps)) with the max subtracted."""
    r = np.asarray(losses, np.float64) / (temperature * np.asarray(reference, np.float64) + eps)
    e = np.exp(r - r.max())
    return n * e / e.sum()


class NpReLoBRaLo:
    """ReLoBRaLo exactly as REFERENCE.md states it, with the Bernoulli draw supplied."""

    def __init__(self, n, alpha, temperature, eps=EPS):
        self.n, self.alpha, self.T, self.eps = n, alpha, temperature, eps
        self.step = 0
        self.lam = np.ones(n)
        self.L0 = None
        self.prev = None

    def branch(self, losses, rho):
        """The weights this step would get with the lookback draw ``rho`` (0 or 1)."""
        losses = np.asarray(losses, np.float64)
        if self.step == 0:
            return np.ones(self.n)
        lhat_0 = np_lhat(losses, self.L0, self.T, self.eps, self.n)
        if self.step == 1:
            return lhat_0
        lhat_prev = np_lhat(losses, self.prev, self.T, self.eps, self.n)
        a = self.alpha
        return a * (rho * self.lam + (1 - rho) * lhat_0) + (1 - a) * lhat_prev

    def commit(self, losses, lam):
        losses = np.asarray(losses, np.float64)
        if self.step == 0:
            self.L0 = losses.copy()
        self.prev = losses.copy()
        self.lam = np.asarray(lam, np.float64).copy()
        self.step += 1

    def __call__(self, losses, rho):
        lam = self.branch(losses, rho)
        self.commit(losses, lam)
        return lam


def np_softadapt(sequence, temperature, eps=EPS):
    out, prev = [], None
    for losses in sequence:
        losses = np.asarray(losses, np.float64)
        n = losses.size
        out.append(np.ones(n) if prev is None else np_lhat(losses, prev, temperature, eps, n))
        prev = losses
    return np.array(out)


def np_lr_annealing(grad_sequence, residual, a, every, eps=1e-12, weighted=False):
    """Max and mean over all parameters; ``weighted``: the published Algorithm 2.1's
    ``lambda_i * grad L_i`` in the denominator, else the unweighted ``grad L_i``."""
    n = len(grad_sequence[0])
    lam = np.ones(n)
    out = []
    for step, grads in enumerate(grad_sequence):
        flat = [np.concatenate([np.abs(np.ravel(g)) for g in term]) for term in grads]
        if step % every == 0:
            top = flat[residual].max()
            scale = lam if weighted else np.ones(n)
            lhat = np.array([top / (f.mean() * c + eps) for f, c in zip(flat, scale)])
            lhat[residual] = 1.0
            lam = (1 - a) * lam + a * lhat
        out.append(lam.copy())
    return np.array(out)


def np_gradnorm(loss_sequence, grad_sequence, asym, lr, shared, min_weight, eps=1e-12):
    n = len(loss_sequence[0])
    w = np.ones(n)
    L0 = None
    out = []
    for losses, grads in zip(loss_sequence, grad_sequence):
        losses = np.asarray(losses, np.float64)
        if L0 is None:
            L0 = losses.copy()
        g = np.array([np.linalg.norm(np.ravel(term[shared])) for term in grads])
        G = w * g
        ratio = losses / (L0 + eps)
        r = ratio / (ratio.mean() + eps)
        target = G.mean() * r**asym
        w = w - lr * np.sign(G - target) * g
        w = np.maximum(w, min_weight)
        w = n * w / w.sum()
        out.append(w.copy())
    return np.array(out)


# -- helpers ----------------------------------------------------------------------------------
def random_losses(rng, steps, n, low=-2.0, high=2.0):
    """A positive loss sequence of shape (steps, n), log-uniform in [10**low, 10**high]."""
    return 10.0 ** rng.uniform(low, high, size=(steps, n))


def feed(balancer, sequence, dtype=tf.float64):
    return np.array([balancer.update(tf.constant(L, dtype)).numpy() for L in sequence])


def synthetic_grads(rng, n, scale=1.0, dtype=tf.float32):
    """Per-term gradient lists over two 'variables' of different sizes (3x2 and 2)."""
    return [
        [
            tf.constant(scale * rng.normal(size=(3, 2)) * 10 ** rng.uniform(-1, 1), dtype),
            tf.constant(scale * rng.normal(size=(2,)) * 10 ** rng.uniform(-1, 1), dtype),
        ]
        for _ in range(n)
    ]


def to_numpy(grads):
    return [[g.numpy().astype(np.float64) for g in term] for term in grads]


# -- ReLoBRaLo against NumPy -----------------------------------------------------------------
@pytest.mark.parametrize("rho", [0.0, 1.0])
@pytest.mark.parametrize(
    "alpha,temperature", [(0.999, 0.1), (0.95, 1.0), (0.5, 0.3), (0.0, 2.0), (1.0, 0.1)]
)
def test_relobralo_matches_numpy_deterministic_lookbacks(rho, alpha, temperature):
    rng = np.random.default_rng(int(1000 * alpha + 10 * temperature + rho))
    n = 3
    sequence = random_losses(rng, 12, n, -1.0, 1.0)
    b = ReLoBRaLo(n, alpha=alpha, temperature=temperature, rho=rho, seed=3, dtype="float64")
    ref = NpReLoBRaLo(n, alpha, temperature)
    for t, losses in enumerate(sequence):
        got = b.update(tf.constant(losses)).numpy()
        want = ref(losses, rho)
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12, err_msg=f"step {t}")
        np.testing.assert_allclose(b.lambdas.numpy(), want, rtol=1e-10, atol=1e-12)
        assert int(b.step.numpy()) == t + 1


def test_relobralo_warm_up():
    b = ReLoBRaLo(3, alpha=1.0, temperature=0.5, rho=1.0, seed=0, dtype="float64")
    L0 = np.array([2.0, 0.5, 7.0])
    L1 = np.array([1.0, 0.6, 3.0])
    # Step 0: weights one, L(0) recorded (both as initial and as previous losses).
    np.testing.assert_array_equal(b.update(tf.constant(L0)).numpy(), np.ones(3))
    np.testing.assert_array_equal(b.initial_losses.numpy(), L0)
    np.testing.assert_array_equal(b.previous_losses.numpy(), L0)
    # Step 1: lhat(1, 0) even with alpha = 1 (which would otherwise keep the weights at one).
    want = np_lhat(L1, L0, 0.5, EPS, 3)
    assert not np.allclose(want, 1.0)
    np.testing.assert_allclose(b.update(tf.constant(L1)).numpy(), want, rtol=1e-12)
    np.testing.assert_array_equal(b.initial_losses.numpy(), L0)  # stored once
    np.testing.assert_array_equal(b.previous_losses.numpy(), L1)
    # Step 2 with alpha = 1, rho = 1: the weights stay where step 1 left them.
    np.testing.assert_allclose(b.update(tf.constant([5.0, 5.0, 5.0])).numpy(), want, rtol=1e-12)
    np.testing.assert_array_equal(b.initial_losses.numpy(), L0)


def test_relobralo_float32_matches_numpy():
    rng = np.random.default_rng(7)
    n = 4
    sequence = 10.0 ** rng.uniform(-0.3, 0.3, size=(10, n))  # ratios near one: float32 is enough
    b = ReLoBRaLo(n, alpha=0.9, temperature=0.1, rho=0.0, seed=0)
    ref = NpReLoBRaLo(n, 0.9, 0.1)
    for losses in sequence:
        got = b.update(tf.constant(losses, tf.float32)).numpy()
        want = ref(losses.astype(np.float32), 0.0)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("rho_prob", [0.3, 0.5, 0.9])
def test_relobralo_random_lookbacks_take_one_of_two_branches(rho_prob):
    rng = np.random.default_rng(11)
    n = 3
    sequence = random_losses(rng, 40, n, -1.0, 1.0)
    b = ReLoBRaLo(n, alpha=0.8, temperature=0.5, rho=rho_prob, seed=5, dtype="float64")
    ref = NpReLoBRaLo(n, 0.8, 0.5)
    seen = []
    for t, losses in enumerate(sequence):
        got = b.update(tf.constant(losses)).numpy()
        one, zero = ref.branch(losses, 1.0), ref.branch(losses, 0.0)
        is_one = np.allclose(got, one, rtol=1e-10, atol=1e-12)
        is_zero = np.allclose(got, zero, rtol=1e-10, atol=1e-12)
        assert is_one or is_zero, f"step {t}: {got} is neither {one} nor {zero}"
        if t >= 2 and not np.allclose(one, zero):
            seen.append(is_one)
        ref.commit(losses, got)
    # Both outcomes of the Bernoulli draw occur in 38 seeded draws (rho strictly inside (0, 1)).
    assert any(seen) and not all(seen)


def test_relobralo_total_uses_constant_weights():
    b = ReLoBRaLo(3, alpha=0.5, temperature=0.2, rho=0.0, seed=0, dtype="float64")
    v = tf.Variable([1.0, 2.0, 3.0], dtype=tf.float64)
    b([v[0], v[1], v[2]])
    v.assign([2.0, 1.0, 9.0])
    with tf.GradientTape() as tape:
        total = b([v[0], v[1], v[2]])
    grad = tape.gradient(total, v).numpy()
    lam = b.lambdas.numpy()
    np.testing.assert_allclose(grad, lam, rtol=1e-12)  # d total / d L_i = lambda_i exactly
    np.testing.assert_allclose(total.numpy(), np.dot(lam, [2.0, 1.0, 9.0]), rtol=1e-12)


# -- SoftAdapt ---------------------------------------------------------------------------------
@pytest.mark.parametrize("temperature", [0.1, 1.0, 5.0])
def test_softadapt_matches_numpy(temperature):
    rng = np.random.default_rng(int(temperature * 10))
    sequence = random_losses(rng, 8, 3, -1.0, 1.0)
    b = SoftAdapt(3, temperature=temperature, dtype="float64")
    got = feed(b, sequence)
    np.testing.assert_allclose(got, np_softadapt(sequence, temperature), rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(got[0], np.ones(3))
    np.testing.assert_array_equal(b.previous_losses.numpy(), sequence[-1])


# -- LRAnnealing -------------------------------------------------------------------------------
@pytest.mark.parametrize("form", ["published", "unweighted"])
@pytest.mark.parametrize("residual,every,dtype", [(0, 3, "float32"), (1, 1, "float64")])
def test_lr_annealing_matches_numpy(residual, every, dtype, form):
    rng = np.random.default_rng(residual + every)
    n, steps = 3, 8
    grad_seq = [synthetic_grads(rng, n, dtype=tf.as_dtype(dtype)) for _ in range(steps)]
    b = LRAnnealing(n, residual_index=residual, a=0.1, update_every=every, dtype=dtype, form=form)
    got = np.array([b.update(tf.ones([n]), grads).numpy() for grads in grad_seq], dtype=np.float64)
    weighted = form == "published"
    want = np_lr_annealing([to_numpy(g) for g in grad_seq], residual, 0.1, every, weighted=weighted)
    rtol = 1e-5 if dtype == "float32" else 1e-10
    np.testing.assert_allclose(got, want, rtol=rtol)
    np.testing.assert_allclose(got[:, residual], 1.0, rtol=rtol)  # the residual keeps weight one
    for t in range(steps):  # between updates nothing moves
        if t % every != 0:
            np.testing.assert_array_equal(got[t], got[t - 1])
        else:
            assert not np.allclose(got[t], got[t - 1] if t else np.ones(n))


def test_lr_annealing_uses_mean_over_all_parameters():
    # Term 1 has |g| = 1 on a 4-element variable and 10 on a 1-element one: the mean over the
    # five parameters is 14 / 5 (not the mean of the per-variable means, 5.5).
    grads = [
        [tf.constant([[3.0, -1.0], [0.5, 0.5]]), tf.constant([2.0])],
        [tf.constant([[1.0, -1.0], [1.0, 1.0]]), tf.constant([-10.0])],
    ]
    b = LRAnnealing(2, a=0.1, update_every=10, dtype="float64", form="unweighted")
    lam = b.update([1.0, 1.0], grads).numpy()
    np.testing.assert_allclose(lam, [1.0, 0.9 + 0.1 * 3.0 / (14.0 / 5.0)], rtol=1e-6)


# -- GradNorm ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "asym,lr,min_weight", [(1.5, 0.025, 1e-3), (0.0, 0.1, 1e-3), (1.0, 5.0, 0.05)]
)
def test_gradnorm_matches_numpy(asym, lr, min_weight):
    rng = np.random.default_rng(int(asym * 10 + lr * 100))
    n, steps = 3, 10
    loss_seq = random_losses(rng, steps, n, -1.0, 1.0)
    grad_seq = [synthetic_grads(rng, n, dtype=tf.float64) for _ in range(steps)]
    b = GradNorm(
        n,
        asymmetry=asym,
        learning_rate=lr,
        shared_variable=0,
        min_weight=min_weight,
        dtype="float64",
        update="sgd",  # pinnlib 0.2.0's form; the Adam form: tests/test_balancers_new.py
    )
    got = np.array([b.update(tf.constant(L), g).numpy() for L, g in zip(loss_seq, grad_seq)])
    want = np_gradnorm(loss_seq, [to_numpy(g) for g in grad_seq], asym, lr, 0, min_weight)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got.sum(axis=1), n, rtol=1e-12)  # renormalised to sum to n
    np.testing.assert_array_equal(b.initial_losses.numpy(), loss_seq[0])


def test_gradnorm_floor_holds_a_weight_that_would_go_negative():
    # Term 0 has a big gradient norm and G_0 above the target, so a large step drives w_0 < 0.
    grads = [[tf.constant([30.0, 40.0], tf.float64)], [tf.constant([0.3, 0.4], tf.float64)]]
    b = GradNorm(
        2,
        asymmetry=0.0,
        learning_rate=1.0,
        shared_variable=0,
        min_weight=0.01,
        dtype="float64",
        update="sgd",
    )
    lam = b.update(tf.constant([1.0, 1.0], tf.float64), grads).numpy()
    # g = (50, 0.5); G = g; target = mean(G) = 25.25; w = (1 - 50, 1 + 0.5) -> (0.01, 1.5).
    w = np.array([0.01, 1.5])
    np.testing.assert_allclose(lam, 2 * w / w.sum(), rtol=1e-12)
    assert lam[0] > 0


# -- Sum and Fixed -------------------------------------------------------------------------------
def test_sum_and_fixed():
    losses = [tf.constant(2.0), tf.constant(3.0), tf.constant(0.5)]
    s = Sum(3)
    assert float(s(losses)) == pytest.approx(5.5)
    np.testing.assert_array_equal(s.lambdas.numpy(), np.ones(3))
    f = Fixed([1.0, 10.0, 0.0])
    np.testing.assert_array_equal(f.lambdas.numpy(), [1.0, 10.0, 0.0])
    assert float(f(losses)) == pytest.approx(32.0)
    for _ in range(3):
        f(losses)
    np.testing.assert_array_equal(f.lambdas.numpy(), [1.0, 10.0, 0.0])
    assert int(f.step.numpy()) == 4
    f.reset()
    assert int(f.step.numpy()) == 0
    np.testing.assert_array_equal(f.lambdas.numpy(), [1.0, 10.0, 0.0])


@pytest.mark.parametrize("weights", [[], [1.0, -1.0], [0.0, 0.0], [1.0, float("nan")], [[1.0]]])
def test_fixed_rejects_bad_weights(weights):
    with pytest.raises(ValueError, match="weights"):
        Fixed(weights)


# -- properties (Hypothesis) --------------------------------------------------------------------
def make_balancer(kind, n, seed=0, dtype="float32"):
    return {
        "Sum": lambda: Sum(n, dtype=dtype),
        "Fixed": lambda: Fixed(np.linspace(1.0, 2.0, n), dtype=dtype),
        "SoftAdapt": lambda: SoftAdapt(n, temperature=0.1, dtype=dtype),
        "ReLoBRaLo": lambda: ReLoBRaLo(n, rho=0.5, seed=seed, dtype=dtype),
        "LRAnnealing": lambda: LRAnnealing(n, update_every=2, dtype=dtype),
        "GradNorm": lambda: GradNorm(n, learning_rate=0.5, shared_variable=0, dtype=dtype),
        "GlobalGradNorm": lambda: GlobalGradNorm(n, update_every=2, dtype=dtype),
        "HomoscedasticUncertainty": lambda: HomoscedasticUncertainty(n, dtype=dtype),
    }[kind]()


KINDS = [
    "Sum",
    "Fixed",
    "SoftAdapt",
    "ReLoBRaLo",
    "LRAnnealing",
    "GradNorm",
    "GlobalGradNorm",
    "HomoscedasticUncertainty",
]


def run_sequence(b, sequence, seed=0):
    """Feed a loss sequence (and bounded synthetic gradients where needed); return weights."""
    rng = np.random.default_rng(seed)
    out = []
    for losses in sequence:
        grads = synthetic_grads(rng, b.num_terms) if b.needs_gradients else None
        out.append(b.update(tf.constant(losses, tf.float32), grads).numpy())
    return np.array(out, dtype=np.float64)


@pytest.mark.parametrize("kind", KINDS)
@given(data=st.data())
def test_weights_finite_and_positive(kind, data):
    n = data.draw(st.integers(1, 4), label="n")
    steps = data.draw(st.integers(1, 6), label="steps")
    # Any magnitude (1e-6 .. 1e6), but each term changes by at most 10**0.15 per step (10**0.75
    # over the run), so the softmax exponents at T = 0.1 differ by less than 60 and no weight
    # underflows to zero in float32 (exp(-104) would).
    start = data.draw(st.lists(st.floats(-6.0, 6.0), min_size=n, max_size=n), label="start")
    moves = data.draw(
        st.lists(
            st.lists(st.floats(-0.15, 0.15), min_size=n, max_size=n),
            min_size=steps - 1,
            max_size=steps - 1,
        ),
        label="moves",
    )
    sequence = 10.0 ** (np.array(start) + np.cumsum(np.vstack([np.zeros(n), *moves]), axis=0))
    lam = run_sequence(make_balancer(kind, n), sequence)
    assert np.all(np.isfinite(lam)) and np.all(lam > 0), lam
    if kind in ("SoftAdapt", "ReLoBRaLo"):
        np.testing.assert_allclose(lam.sum(axis=1), n, rtol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
@given(
    start=st.lists(st.floats(-8.0, 8.0), min_size=3, max_size=3),
    moves=st.lists(
        st.lists(st.floats(-15.0, 15.0), min_size=3, max_size=3), min_size=1, max_size=5
    ),
)
@example(start=[0.0, 0.0, 0.0], moves=[[-15.0, 15.0, 0.0], [15.0, -15.0, 0.0], [-15.0, 15.0, 15.0]])
def test_extreme_loss_ratios_give_finite_weights(kind, start, moves):
    # L(t) = L(0) * 10**u with |u| <= 15: every ratio L(t)/L(t') lies in [1e-30, 1e30] and every
    # loss lies well inside the float32 range (1e-23 .. 1e23).
    sequence = 10.0 ** (np.array(start) + np.vstack([np.zeros(3), np.array(moves)]))
    lam = run_sequence(make_balancer(kind, 3), sequence)
    # Finite; a softmax weight may underflow to exactly 0 here (exp(-1e30)), never below.
    assert np.all(np.isfinite(lam)) and np.all(lam >= 0), lam
    if kind in ("SoftAdapt", "ReLoBRaLo"):
        np.testing.assert_allclose(lam.sum(axis=1), 3, rtol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_all_zero_losses_give_no_nan(kind):
    b = make_balancer(kind, 3)
    lam = []
    for _ in range(4):
        grads = [[tf.zeros([3, 2]), tf.zeros([2])] for _ in range(3)] if b.needs_gradients else None
        total = b(tf.zeros([3]), grads)
        assert np.isfinite(total.numpy())
        lam.append(b.lambdas.numpy())
    lam = np.array(lam)
    assert np.all(np.isfinite(lam)) and np.all(lam >= 0)
    if kind in ("SoftAdapt", "ReLoBRaLo"):
        np.testing.assert_allclose(lam, 1.0)  # no information: equal weights


@given(
    base=st.lists(st.floats(6.0, 8.0), min_size=6, max_size=6),
    scale=st.floats(-2.0, 4.0),
    term=st.integers(0, 2),
    alpha=st.sampled_from([0.0, 0.5, 0.95, 0.999]),
    temperature=st.sampled_from([0.1, 1.0, 3.0]),
    rho=st.sampled_from([0.0, 0.5, 1.0]),
)
def test_relobralo_unchanged_when_a_term_is_rescaled(base, scale, term, alpha, temperature, rho):
    # Losses 1e6 .. 1e8, rescaled by 1e-2 .. 1e4: far above eps = 1e-7, so eps does not matter.
    rng = np.random.default_rng(int(sum(base) * 1000) % 2**32)
    sequence = 10.0 ** (np.array(base)[:, None] * np.ones(3) + rng.uniform(-0.5, 0.5, (6, 3)))
    scaled = sequence.copy()
    scaled[:, term] *= 10.0**scale
    kw = dict(alpha=alpha, temperature=temperature, rho=rho, seed=4, dtype="float64")
    a = feed(ReLoBRaLo(3, **kw), sequence)
    b = feed(ReLoBRaLo(3, **kw), scaled)
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_softadapt_unchanged_when_a_term_is_rescaled():
    rng = np.random.default_rng(2)
    sequence = random_losses(rng, 6, 3, 5.0, 6.0)
    scaled = sequence * np.array([1.0, 1e3, 1e-2])
    a = feed(SoftAdapt(3, temperature=0.5, dtype="float64"), sequence)
    b = feed(SoftAdapt(3, temperature=0.5, dtype="float64"), scaled)
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


# -- validation ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"alpha": -0.1}, "alpha"),
        ({"alpha": 1.5}, "alpha"),
        ({"alpha": float("nan")}, "alpha"),
        ({"rho": -0.01}, "rho"),
        ({"rho": 1.01}, "rho"),
        ({"rho": float("nan")}, "rho"),
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": -1.0}, "temperature"),
        ({"temperature": float("inf")}, "temperature"),
        ({"eps": -1e-7}, "eps"),
    ],
)
def test_relobralo_validation(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ReLoBRaLo(2, **kwargs)


@pytest.mark.parametrize("value", ["x", None, [0.5]])
def test_non_numeric_hyperparameter_is_a_type_error(value):
    with pytest.raises(TypeError, match="alpha"):
        ReLoBRaLo(2, alpha=value)


@pytest.mark.parametrize(
    "cls",
    [Sum, SoftAdapt, ReLoBRaLo, LRAnnealing, GradNorm, GlobalGradNorm, HomoscedasticUncertainty],
)
@pytest.mark.parametrize(
    "num_terms,error",
    [(0, ValueError), (-2, ValueError), (2.5, TypeError), ("2", TypeError), (True, TypeError)],
)
def test_num_terms_validation(cls, num_terms, error):
    with pytest.raises(error, match="num_terms"):
        cls(num_terms)


@pytest.mark.parametrize(
    "make,name",
    [
        (lambda: SoftAdapt(2, temperature=0.0), "temperature"),
        (lambda: LRAnnealing(2, a=0.0), "a must"),
        (lambda: LRAnnealing(2, a=1.5), "a must"),
        (lambda: LRAnnealing(2, update_every=0), "update_every"),
        (lambda: LRAnnealing(2, residual_index=2), "residual_index"),
        (lambda: GradNorm(2, asymmetry=-1.0), "asymmetry"),
        (lambda: GradNorm(2, learning_rate=0.0), "learning_rate"),
        (lambda: GradNorm(2, min_weight=0.0), "min_weight"),
        (lambda: Sum(2, dtype="int32"), "dtype"),
    ],
)
def test_other_hyperparameter_validation(make, name):
    with pytest.raises(ValueError, match=name):
        make()


def test_fractional_update_period_is_rejected():
    # A period of 2.5 steps means nothing; silently truncating it to 2 hides a mistake.
    with pytest.raises((TypeError, ValueError), match="update_every"):
        LRAnnealing(2, update_every=2.5)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("count", [2, 4])
def test_wrong_number_of_losses(kind, count):
    b = make_balancer(kind, 3)
    with pytest.raises(ValueError, match=r"3 loss terms, got " + str(count)):
        b([1.0] * count)
    with pytest.raises(ValueError, match=r"3 loss terms, got " + str(count)):
        b.update(tf.ones([count]))
    assert int(b.step.numpy()) == 0  # nothing was recorded


def test_gradient_balancers_need_matching_grads():
    b = LRAnnealing(2)
    with pytest.raises(ValueError, match="grads"):
        b.update([1.0, 2.0])
    with pytest.raises(ValueError, match="2 terms, got 1"):
        b.update([1.0, 2.0], [[tf.ones([2])]])


# -- int64 step counter ---------------------------------------------------------------------
@pytest.mark.parametrize("big", [2**31 + 5, 2**40])
def test_step_counter_is_int64_and_keeps_initial_losses(big):
    b = ReLoBRaLo(2, alpha=0.9, temperature=0.5, rho=0.0, seed=0, dtype="float64")
    assert b.step.dtype == tf.int64
    ref = NpReLoBRaLo(2, 0.9, 0.5)
    L0, L1, L2 = np.array([4.0, 0.2]), np.array([2.0, 0.3]), np.array([1.0, 0.1])
    for L in (L0, L1):
        b.update(tf.constant(L))
        ref(L, 0.0)
    b.step.assign(big)
    got = b.update(tf.constant(L2)).numpy()
    # Still the full rule (not the warm-up), still looking back to L(0).
    np.testing.assert_allclose(got, ref(L2, 0.0), rtol=1e-12)
    np.testing.assert_array_equal(b.initial_losses.numpy(), L0)
    assert int(b.step.numpy()) == big + 1


def test_balancer_works_inside_tf_function():
    b = ReLoBRaLo(2, alpha=0.5, temperature=1.0, rho=0.0, seed=0, dtype="float64")
    ref = NpReLoBRaLo(2, 0.5, 1.0)

    @tf.function
    def step(losses):
        return b(losses), b.lambdas.read_value()

    for L in ([1.0, 2.0], [0.5, 2.5], [0.1, 3.0]):
        total, lam = step(tf.constant(L, tf.float64))
        want = ref(L, 0.0)
        np.testing.assert_allclose(lam.numpy(), want, rtol=1e-12)
        np.testing.assert_allclose(total.numpy(), np.dot(want, L), rtol=1e-12)


# -- checkpoints -----------------------------------------------------------------------------
def test_checkpoint_round_trip_restores_generator(tmp_path):
    rng = np.random.default_rng(0)
    sequence = random_losses(rng, 25, 3, -1.0, 1.0)
    kw = dict(alpha=0.7, temperature=0.5, rho=0.5, dtype="float64")
    b = ReLoBRaLo(3, seed=1, **kw)
    feed(b, sequence[:5])
    path = tf.train.Checkpoint(balancer=b).save(str(tmp_path / "ckpt"))
    want = feed(b, sequence[5:])

    other = ReLoBRaLo(3, seed=99, **kw)
    unrestored = feed(other, sequence)[5:]
    assert not np.allclose(unrestored, want)  # another seed draws other lookbacks

    fresh = ReLoBRaLo(3, seed=99, **kw)
    tf.train.Checkpoint(balancer=fresh).restore(path).assert_existing_objects_matched()
    assert int(fresh.step.numpy()) == 5
    got = feed(fresh, sequence[5:])
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    "balancer, names",
    [
        (Sum(2), ["lambdas", "step"]),
        (Fixed([1.0, 3.0]), ["lambdas", "step"]),
        (SoftAdapt(2, temperature=0.5), ["lambdas", "previous_losses", "step"]),
        (LRAnnealing(2, a=0.2, update_every=3, weighted=True), ["lambdas", "step"]),
        (
            GradNorm(2, asymmetry=0.5),
            ["adam_m", "adam_v", "floor_hits", "initial_losses", "lambdas", "step"],
        ),
        (LRAnnealing(2, form="authors_code"), ["lambdas", "step"]),
        (GlobalGradNorm(2, momentum=0.5, form="jaxpi"), ["lambdas", "step"]),
        (HomoscedasticUncertainty(2), ["lambdas", "log_variances", "step"]),
        (
            ReLoBRaLo(2, alpha=0.5, rho=0.25, seed=4, dtype="float64"),
            ["generator.state", "initial_losses", "lambdas", "previous_losses", "step"],
        ),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, list) else "",
)
def test_config_and_state_variables(balancer, names):
    # get_config/from_config rebuild the balancer's arguments; state_variables names its state,
    # the generator's included (what Keras saving of PINNModel writes by name).
    config = balancer.get_config()
    assert json.loads(json.dumps(config)) == config  # plain values, storable in a .keras file
    again = type(balancer).from_config(config)
    assert repr(again) == repr(balancer) and again.get_config() == config
    assert again.dtype == balancer.dtype
    state = balancer.state_variables()
    assert sorted(state) == names
    assert all(isinstance(v, tf.Variable) for v in state.values())
    if "generator.state" in state:
        assert state["generator.state"] is balancer.generator.state
    np.testing.assert_array_equal(again.lambdas.numpy(), balancer.lambdas.numpy())


# -- the file can be copied alone ---------------------------------------------------------------
def test_balancing_imports_only_tensorflow_and_numpy():
    tree = ast.parse(Path(balancing.__file__).read_text(encoding="utf-8"))
    top = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            top.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative import"
            top.add(node.module.split(".")[0])
    third_party = {m for m in top if m not in sys.stdlib_module_names and m != "__future__"}
    assert third_party == {"numpy", "tensorflow"}


def test_balancing_copied_alone_works(tmp_path):
    shutil.copy(balancing.__file__, tmp_path / "balancing.py")
    repo = Path(balancing.__file__).resolve().parents[1]
    script = f"""
import json, sys
repo = {str(repo)!r}
sys.path = [{str(tmp_path)!r}] + [p for p in sys.path if p not in ("", ".", repo)]
import balancing
assert balancing.__file__.startswith({str(tmp_path)!r}), balancing.__file__
b = balancing.ReLoBRaLo(2, alpha=0.5, temperature=1.0, rho=0.0, seed=0, dtype="float64")
out = [b.update([1.0, 2.0]).numpy().tolist(), b.update([0.5, 4.0]).numpy().tolist()]
print(json.dumps({{"lambdas": out, "pinnlib": "pinnlib" in sys.modules}}))
"""
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={
            **{k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
            "TF_CPP_MIN_LOG_LEVEL": "3",
        },
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["pinnlib"] is False
    np.testing.assert_allclose(result["lambdas"][0], [1.0, 1.0])
    np.testing.assert_allclose(
        result["lambdas"][1], np_lhat([0.5, 4.0], [1.0, 2.0], 1.0, EPS, 2), rtol=1e-12
    )
