"""The TensorFlow balancers (pinnlib.balancing) against the shared golden cases.

The same NumPy rules and inputs (tests/golden_balancers.py) test the PyTorch and JAX ports,
so the three implementations agree step for step. ReLoBRaLo's lookbacks are replayed from the
draws the TensorFlow balancer makes: ``tf.random.Generator.from_seed(seed).uniform([])`` once
per step. The gradient rules are checked in every form their sources give (LRAnnealing's
published / authors' code / unweighted, GlobalGradNorm's paper / jaxpi, GradNorm's Adam / SGD
with its floor counter), and the defaults against :data:`golden.DEFAULTS`.
"""

from __future__ import annotations

import golden_balancers as golden
import keras
import numpy as np
import pytest
import tensorflow as tf

from pinnlib.balancing import (
    Fixed,
    GlobalGradNorm,
    GradNorm,
    HomoscedasticUncertainty,
    LRAnnealing,
    ReLoBRaLo,
    SoftAdapt,
    Sum,
)


def run(balancer, losses, grads=None) -> np.ndarray:
    out = []
    for t, row in enumerate(losses):
        step_grads = (
            None if grads is None else [[tf.constant(g) for g in term] for term in grads[t]]
        )
        out.append(balancer.update(tf.constant(row), step_grads).numpy())
    return np.array(out)


def tf_draws(seed: int, steps: int) -> np.ndarray:
    generator = tf.random.Generator.from_seed(seed)
    return np.array([generator.uniform([], dtype=tf.float32).numpy() for _ in range(steps)])


TOL = {"float64": {"rtol": 1e-10, "atol": 1e-12}, "float32": {"rtol": 2e-5, "atol": 1e-6}}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_sum_and_fixed(dtype):
    np.testing.assert_array_equal(
        run(Sum(golden.NUM_TERMS, dtype=dtype), golden.LOSSES), golden.sum_weights(golden.LOSSES)
    )
    np.testing.assert_allclose(
        run(Fixed(golden.FIXED_WEIGHTS, dtype=dtype), golden.LOSSES),
        golden.fixed_weights(golden.LOSSES, golden.FIXED_WEIGHTS),
        **TOL[dtype],
    )


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_softadapt(dtype):
    got = run(SoftAdapt(golden.NUM_TERMS, **golden.SOFTADAPT, dtype=dtype), golden.LOSSES)
    np.testing.assert_allclose(
        got, golden.softadapt(golden.LOSSES, **golden.SOFTADAPT), **TOL[dtype]
    )


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_relobralo(dtype):
    balancer = ReLoBRaLo(golden.NUM_TERMS, **golden.RELOBRALO, seed=golden.SEED, dtype=dtype)
    got = run(balancer, golden.LOSSES)
    draws = tf_draws(golden.SEED, golden.NUM_STEPS)
    looked_back = draws[2:] >= golden.RELOBRALO["rho"]
    assert looked_back.any() and not looked_back.all(), "the case must mix lookbacks and not"
    want = golden.relobralo(golden.LOSSES, draws, **golden.RELOBRALO)
    np.testing.assert_allclose(got, want, **TOL[dtype])


def test_the_cases_discriminate():
    """The fixture tells the forms apart: a port that mixed them up would fail."""
    grads = golden.gradients()
    forms = {
        f: golden.lr_annealing(grads, 0, 0.1, 3, f)
        for f in ("published", "authors_code", "unweighted")
    }
    assert not np.allclose(forms["published"], forms["authors_code"], rtol=1e-3)
    assert not np.allclose(forms["published"], forms["unweighted"], rtol=1e-3)
    # authors_code's mean of layer means differs from the mean over all kernel entries.
    kernels = [[np.abs(g) for g in term if g.ndim == 2] for term in grads[0]]
    layer_means = [np.mean([k.mean() for k in ks]) for ks in kernels]
    pooled = [np.concatenate([k.ravel() for k in ks]).mean() for ks in kernels]
    assert not np.allclose(layer_means, pooled, rtol=1e-3)
    paper, jaxpi = (golden.global_grad_norm(grads, 0.9, 4, f) for f in ("paper", "jaxpi"))
    assert not np.allclose(paper, jaxpi, rtol=1e-3)
    for case in golden.GRADNORM_CASES:
        hits = golden.gradnorm_golden(golden.LOSSES, grads, case)[1]
        assert (hits.sum() > 0) == (case["min_weight"] > 1e-3 or case["update"] == "sgd"), case


def test_defaults():
    lra = LRAnnealing(golden.NUM_TERMS)
    for name, value in golden.DEFAULTS["LRAnnealing"].items():
        assert getattr(lra, name) == value, name
    gradnorm = GradNorm(golden.NUM_TERMS)
    for name, value in golden.DEFAULTS["GradNorm"].items():
        assert getattr(gradnorm, "update_rule" if name == "update" else name) == value, name
    for update, rate in golden.GRADNORM_LEARNING_RATES.items():
        assert GradNorm(golden.NUM_TERMS, update=update).learning_rate == rate
    assert GradNorm.ADAM == golden.ADAM
    ggn = GlobalGradNorm(golden.NUM_TERMS)
    for name, value in golden.DEFAULTS["GlobalGradNorm"].items():
        assert getattr(ggn, name) == value, name


@pytest.mark.parametrize("case", golden.LR_ANNEALING_CASES + [{}], ids=str)
def test_lr_annealing(case):
    grads = golden.gradients()
    got = run(LRAnnealing(golden.NUM_TERMS, **case, dtype="float64"), golden.LOSSES, grads)
    np.testing.assert_allclose(got, golden.lr_annealing_golden(grads, case), **TOL["float64"])


@pytest.mark.parametrize("case", golden.GLOBAL_GRAD_NORM_CASES + [{}], ids=str)
def test_global_grad_norm(case):
    grads = golden.gradients()
    got = run(GlobalGradNorm(golden.NUM_TERMS, **case, dtype="float64"), golden.LOSSES, grads)
    np.testing.assert_allclose(got, golden.global_grad_norm_golden(grads, case), **TOL["float64"])


@pytest.mark.parametrize("case", golden.GRADNORM_CASES + [{}, {"update": "sgd"}], ids=str)
def test_gradnorm(case):
    grads = golden.gradients()
    balancer = GradNorm(golden.NUM_TERMS, **case, dtype="float64")
    got = run(balancer, golden.LOSSES, grads)
    want, hits = golden.gradnorm_golden(golden.LOSSES, grads, case)
    np.testing.assert_allclose(got, want, **TOL["float64"])
    np.testing.assert_array_equal(balancer.floor_hits.numpy(), hits)


@pytest.mark.parametrize("point", range(len(golden.UNCERTAINTY_POINTS)))
def test_homoscedastic_uncertainty_total_and_gradients(point):
    losses, s = golden.UNCERTAINTY_POINTS[point]
    balancer = HomoscedasticUncertainty(golden.NUM_TERMS, dtype="float64")
    balancer.log_variances.assign(s)
    L = tf.Variable(losses, dtype=tf.float64)
    with tf.GradientTape() as tape:
        total = balancer(L)
    ds, dL = tape.gradient(total, [balancer.log_variances, L])
    want_total, want_ds, want_dL = golden.homoscedastic_uncertainty(losses, s)
    np.testing.assert_allclose(total.numpy(), want_total, **TOL["float64"])
    np.testing.assert_allclose(ds.numpy(), want_ds, **TOL["float64"])
    np.testing.assert_allclose(dL.numpy(), want_dL, **TOL["float64"])
    np.testing.assert_allclose(balancer.lambdas.numpy(), want_dL, **TOL["float64"])


def test_homoscedastic_uncertainty_trained_by_sgd():
    """One Keras SGD step on ``s`` per step (the losses held fixed): the golden trajectory."""
    balancer = HomoscedasticUncertainty(golden.NUM_TERMS, dtype="float64")
    optimizer = keras.optimizers.SGD(golden.UNCERTAINTY_LR)
    optimizer.build([balancer.log_variances])
    weights, totals = [], []
    for row in golden.LOSSES:
        with tf.GradientTape() as tape:
            total = balancer(tf.constant(row))
        weights.append(balancer.lambdas.numpy())  # read before the step moves s
        totals.append(float(total))
        optimizer.apply(tape.gradient(total, [balancer.log_variances]), [balancer.log_variances])
    want_w, want_t = golden.uncertainty_sgd(golden.LOSSES, golden.UNCERTAINTY_LR)
    np.testing.assert_allclose(np.array(weights), want_w, **TOL["float64"])
    np.testing.assert_allclose(np.array(totals), want_t, **TOL["float64"])
