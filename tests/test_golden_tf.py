"""The TensorFlow balancers (pinnlib.balancing) against the shared golden cases.

The same NumPy rules and inputs (tests/golden_balancers.py) test the PyTorch and JAX ports,
so the three implementations agree step for step. ReLoBRaLo's lookbacks are replayed from the
draws the TensorFlow balancer makes: ``tf.random.Generator.from_seed(seed).uniform([])`` once
per step.
"""

from __future__ import annotations

import golden_balancers as golden
import numpy as np
import pytest
import tensorflow as tf

from pinnlib.balancing import Fixed, GradNorm, LRAnnealing, ReLoBRaLo, SoftAdapt, Sum


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


@pytest.mark.parametrize("case", golden.LR_ANNEALING_CASES)
def test_lr_annealing(case):
    grads = golden.gradients()
    got = run(LRAnnealing(golden.NUM_TERMS, **case, dtype="float64"), golden.LOSSES, grads)
    np.testing.assert_allclose(got, golden.lr_annealing_golden(grads, case), **TOL["float64"])


def test_gradnorm():
    grads = golden.gradients()
    balancer = GradNorm(golden.NUM_TERMS, **golden.GRADNORM_CASE, dtype="float64")
    got = run(balancer, golden.LOSSES, grads)
    want = golden.gradnorm_golden(golden.LOSSES, grads)
    np.testing.assert_allclose(got, want, **TOL["float64"])
