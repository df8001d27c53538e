"""Causal weighting (Wang, Sankaran & Perdikaris 2024, arXiv:2203.07404) re-derived in NumPy."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import pinnlib


def numpy_causal(residual: np.ndarray, t: np.ndarray, slabs: int, eps: float) -> float:
    """The paper's rule written out: slab means, w_k = exp(-eps * sum_{j<k} L^j), mean of w L."""
    k = np.minimum(np.floor(t * slabs).astype(int), slabs - 1)
    per_slab = np.array(
        [np.mean(residual[k == j] ** 2) if np.any(k == j) else 0.0 for j in range(slabs)]
    )
    before = np.concatenate([[0.0], np.cumsum(per_slab)[:-1]])
    weights = np.exp(-eps * before)
    return float(np.mean(weights * per_slab)), weights


@pytest.mark.parametrize("slabs, eps", [(4, 1.0), (8, 10.0), (32, 0.5)])
def test_losses_match_the_numpy_rule_and_other_terms_are_untouched(slabs, eps):
    burgers = pinnlib.Burgers()
    causal = pinnlib.Causal(burgers, slabs=slabs, tolerance=eps)
    model = pinnlib.mlp(2, 2, 16, seed=1, dtype="float64")
    points = causal.sample(256, 64, tf.random.Generator.from_seed(2), "float64")
    res = burgers.residuals(model, points)
    expected, _ = numpy_causal(
        res["L_f"].numpy().reshape(-1), points["interior"].numpy()[:, 1], slabs, eps
    )
    got = causal.losses(model, points)
    plain = burgers.losses(model, points)
    np.testing.assert_allclose(got[0].numpy(), expected, rtol=1e-10)
    for a, b in zip(got[1:], plain[1:]):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # A causal weight never exceeds one, and the first slab's is one.
    weights = causal.weights(model, n=512)
    assert weights[0] == 1.0 and np.all(weights <= 1.0) and np.all(np.diff(weights) <= 0)


def test_no_gradient_flows_through_the_weights():
    causal = pinnlib.Causal(pinnlib.Burgers(), slabs=4, tolerance=3.0)
    model = pinnlib.mlp(2, 1, 8, seed=4, dtype="float64")
    points = causal.sample(64, 16, tf.random.Generator.from_seed(5), "float64")
    t = points["interior"][:, 1]
    with tf.GradientTape(persistent=True) as tape:
        loss = causal.losses(model, points)[0]
        per_slab = causal.slab_losses(causal.residuals(model, points)["L_f"], t)
    w = causal.slab_weights(per_slab).numpy()
    got = tape.gradient(loss, model.trainable_variables)
    slab_grads = [tape.jacobian(per_slab, v) for v in model.trainable_variables]
    for g, jac in zip(got, slab_grads):
        manual = np.tensordot(w, jac.numpy(), axes=1) / 4  # (1/M) sum_k w_k grad L^k
        np.testing.assert_allclose(g.numpy(), manual, rtol=1e-9, atol=1e-12)


def test_bad_arguments_are_refused_by_name():
    with pytest.raises(ValueError, match="time coordinate"):
        pinnlib.Causal(pinnlib.Helmholtz())
    with pytest.raises(ValueError, match="slabs"):
        pinnlib.Causal(pinnlib.Burgers(), slabs=1)
    with pytest.raises(ValueError, match="tolerance"):
        pinnlib.Causal(pinnlib.Burgers(), tolerance=0.0)
    with pytest.raises(TypeError, match="pinnlib PDE"):
        pinnlib.Causal("burgers")


def test_trains_with_a_balancer_and_rebuilds_from_its_config():
    causal = pinnlib.Causal(pinnlib.Burgers(), slabs=8)
    model = pinnlib.mlp(2, 2, 16, seed=0)
    balancer = pinnlib.ReLoBRaLo(causal.num_terms, seed=0)
    history = pinnlib.train(
        model,
        causal,
        balancer,
        steps=30,
        n_interior=128,
        n_boundary=64,
        seed=0,
        progress=False,
        jit_compile=False,
        eval_every=30,
        eval_points=32,
    )
    assert np.isfinite(history.final_error)
    again = pinnlib.Causal.from_config(causal.get_config())
    assert (again.slabs, again.tolerance, again.term_names) == (8, 1.0, causal.term_names)
    assert isinstance(again.pde, pinnlib.Burgers)
