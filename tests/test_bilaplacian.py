"""Tests of the forward bi-Laplacian (pinnlib.bilaplacian) and its use in the Kirchhoff plate.

The reference is an independent nested-tape computation written here: the Laplacian as the
trace of a batch Jacobian of the gradient, then the Laplacian of that Laplacian. Closed forms
(a one-unit sine network, Navier's solution written exactly as a two-unit sine network) check
the forward path against facts rather than against another implementation.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import pinnlib
from pinnlib import Kirchhoff
from pinnlib.derivatives import BiLaplacian, bilaplacian, forward_derivatives
from pinnlib.stacked import StackedMLP

PI = math.pi


def points(dtype, dims, box, n=30, seed=0):
    lo, hi = np.asarray(box[0], float), np.asarray(box[1], float)
    return tf.constant(np.random.default_rng(seed).uniform(lo, hi, (n, dims)), dtype)


def nested_tapes(model, x):
    """Gradient (N, d), Hessian (N, d, d) and lap(lap(u)) (N, 1) by plain nested tapes."""
    dims = x.shape[-1]
    with tf.GradientTape(persistent=True) as t4:
        t4.watch(x)
        with tf.GradientTape() as t3:
            t3.watch(x)
            with tf.GradientTape() as t2:
                t2.watch(x)
                with tf.GradientTape() as t1:
                    t1.watch(x)
                    u = model(x)
                grad = t1.gradient(u, x)
            hess = t2.batch_jacobian(grad, x)
            lap = tf.linalg.trace(hess)
        grad_lap = t3.gradient(lap, x)
        parts = [grad_lap[:, k] for k in range(dims)]
    bilap = tf.add_n([t4.gradient(parts[k], x)[:, k] for k in range(dims)])
    return grad.numpy(), hess.numpy(), bilap.numpy()[:, None]


def assert_close(got, want, tol, what):
    scale = float(np.max(np.abs(want)))
    assert scale > 1e-8, f"{what} is trivially zero"  # a real check, not 0 == 0
    err = float(np.max(np.abs(np.asarray(got) - want)))
    assert err <= tol * scale, f"{what}: error {err:.3e}, scale {scale:.3e}"


# -- against nested tapes -----------------------------------------------------------------------
@pytest.mark.parametrize("dtype,tol", [("float64", 1e-10), ("float32", 1e-5)])
@pytest.mark.parametrize("activation", ["tanh", "sin"])
@pytest.mark.parametrize("dims,scaled", [(2, False), (2, True), (3, True), (1, True)])
def test_forward_matches_nested_tapes(dtype, tol, activation, dims, scaled):
    box = (np.linspace(0.0, -1.0, dims), np.linspace(4.0, 3.0, dims))
    kw = dict(input_range=box, output_scale=0.3) if scaled else {}
    model = pinnlib.mlp(dims, 3, 16, activation=activation, seed=2, dtype=dtype, **kw)
    x = points(dtype, dims, box if scaled else (-np.ones(dims), np.ones(dims)))
    got = bilaplacian(model, x, mode="forward")
    assert isinstance(got, BiLaplacian)
    grad, hess, bilap = nested_tapes(model, x)
    for t in (got.value, *got.gradient, *got.hessian.values(), got.bilaplacian):
        assert t.shape == (30, 1) and t.dtype == tf.as_dtype(dtype)
    np.testing.assert_allclose(got.value.numpy(), model(x).numpy(), rtol=1e-6, atol=1e-7)
    for i in range(dims):
        assert_close(got.gradient[i].numpy()[:, 0], grad[:, i], tol, f"d{i}")
    pairs = [(i, j) for i in range(dims) for j in range(i, dims)]
    assert len(got.hessian) == len(pairs)
    for i, j in pairs:
        alpha = tuple(int(k == i) + int(k == j) for k in range(dims))
        assert_close(got.hessian[alpha].numpy()[:, 0], hess[:, i, j], tol, f"hessian {alpha}")
    assert_close(got.bilaplacian.numpy(), bilap, tol, "bilaplacian")


def test_tape_mode_matches_nested_tapes():
    model = pinnlib.mlp(2, 2, 12, seed=5, dtype="float64")
    x = points("float64", 2, ((-1, -1), (1, 1)))
    got = bilaplacian(model, x, mode="tape")
    grad, hess, bilap = nested_tapes(model, x)
    assert_close(got.bilaplacian.numpy(), bilap, 1e-10, "bilaplacian")
    assert_close(got.hessian[(1, 1)].numpy()[:, 0], hess[:, 0, 1], 1e-10, "u_xy")
    assert_close(got.gradient[1].numpy()[:, 0], grad[:, 1], 1e-10, "u_y")


def test_inside_an_xla_compiled_function():
    model = pinnlib.mlp(2, 3, 16, seed=1, dtype="float64")
    x = points("float64", 2, ((-1, -1), (1, 1)))
    compiled = tf.function(lambda p: bilaplacian(model, p).bilaplacian, jit_compile=True)
    want = bilaplacian(model, x).bilaplacian.numpy()
    np.testing.assert_allclose(
        compiled(x).numpy(), want, rtol=1e-12, atol=1e-12 * np.abs(want).max()
    )


# -- closed forms -------------------------------------------------------------------------------
def test_one_sine_unit_has_bilaplacian_w4_times_u():
    """u = v sin(w.x + b) + c: Hessian -w_i w_j (u - c), bi-Laplacian |w|^4 (u - c)."""
    model = pinnlib.mlp(2, 1, 1, activation="sin", seed=0, dtype="float64")
    w = model.layers[0].kernel.numpy()[:, 0]
    c = model.layers[1].bias.numpy()[0]
    x = points("float64", 2, ((-1, -1), (1, 1)))
    got = bilaplacian(model, x)
    u = got.value.numpy() - c
    np.testing.assert_allclose(got.bilaplacian.numpy(), np.sum(w**2) ** 2 * u, rtol=1e-12)
    np.testing.assert_allclose(got.hessian[(1, 1)].numpy(), -w[0] * w[1] * u, rtol=1e-12)
    np.testing.assert_allclose(got.hessian[(2, 0)].numpy(), -(w[0] ** 2) * u, rtol=1e-12)


def navier_network(pde: Kirchhoff, dtype="float64"):
    """Navier's solution written exactly as a pinnlib.mlp with one hidden layer of two sines.

    With the input map to [-1, 1]^2, a = pi x / W = pi (X + 1) / 2 and b = pi (Y + 1) / 2, and
    sin(a) sin(b) = (sin(a - b + pi/2) - sin(a + b + pi/2)) / 2.
    """
    model = pinnlib.mlp(
        2,
        1,
        2,
        activation="sin",
        dtype=dtype,
        seed=0,
        input_range=(pde.lower, pde.upper),
        output_scale=pde.peak,
    )
    hidden, out = model.layers[1], model.layers[2]
    hidden.kernel.assign(np.array([[PI / 2, PI / 2], [-PI / 2, PI / 2]]))
    hidden.bias.assign(np.array([PI / 2, 3 * PI / 2]))
    out.kernel.assign(np.array([[0.5], [-0.5]]))
    out.bias.assign(np.array([0.0]))
    return model


@pytest.mark.parametrize("boundary", ["grouped", "separate"])
def test_navier_solution_as_a_network_has_zero_residuals_in_forward_mode(boundary):
    pde = Kirchhoff(width=10.0, height=6.0, boundary=boundary)
    model = navier_network(pde)
    pts = pde.sample(64, 32, tf.random.Generator.from_seed(0), "float64")
    np.testing.assert_allclose(model(pts["interior"]).numpy(), pde.exact(pts["interior"].numpy()))
    res = pde.residuals(model, pts, mode="forward")
    assert tuple(res) == pde.term_names
    np.testing.assert_allclose(res["L_f"].numpy(), 0.0, atol=1e-10 * pde.p0)  # load units
    for name in pde.term_names[1:]:
        np.testing.assert_allclose(res[name].numpy(), 0.0, atol=1e-12, err_msg=name)


# -- Kirchhoff: forward bi-Laplacian = nested tapes = the directional jets used before ----------
@pytest.mark.parametrize("boundary", ["grouped", "separate"])
@pytest.mark.parametrize("dtype,tol", [("float64", 1e-10), ("float32", 1e-5)])
def test_kirchhoff_losses_forward_equal_tape(boundary, dtype, tol):
    pde = Kirchhoff(width=10.0, height=6.0, nu=0.3, boundary=boundary)
    model = pinnlib.mlp(2, 3, 16, seed=3, dtype=dtype, input_range=(pde.lower, pde.upper))
    pts = pde.sample(48, 32, tf.random.Generator.from_seed(1), dtype)
    auto = [float(v) for v in pde.losses(model, pts)]  # forward mode applies to a pinnlib.mlp
    tape = [float(v) for v in pde.losses(model, pts, mode="tape")]
    assert len(auto) == pde.num_terms
    np.testing.assert_allclose(auto, tape, rtol=2 * tol)  # a mean square doubles relative error
    jets = forward_derivatives(model, pts["interior"], [(4, 0), (2, 2), (0, 4)])
    before = (jets[(4, 0)] + 2.0 * jets[(2, 2)] + jets[(0, 4)]).numpy()
    assert_close(pde.biharmonic(model, pts["interior"]).numpy(), before, tol, "biharmonic")


def test_kirchhoff_biharmonic_modes():
    pde = Kirchhoff()
    x = pde.sample(16, 4, tf.random.Generator.from_seed(0), "float64")["interior"]
    other = keras.Sequential(
        [keras.Input((2,), dtype="float64"), keras.layers.Dense(8, "softplus", dtype="float64")]
        + [keras.layers.Dense(1, dtype="float64")]
    )
    _, _, want = nested_tapes(other, x)
    assert_close(pde.biharmonic(other, x).numpy(), want, 1e-10, "auto falls back to tapes")
    with pytest.raises(ValueError, match="forward mode supports"):
        pde.biharmonic(other, x, mode="forward")
    with pytest.raises(ValueError, match="mode must be one of"):
        pde.biharmonic(pinnlib.mlp(2, 1, 4, dtype="float64"), x, mode="reverse")


# -- a stack of networks ------------------------------------------------------------------------
def test_stack_equals_its_members():
    box = ([0.0, 0.0], [10.0, 10.0])
    models = [pinnlib.mlp(2, 2, 8, seed=s, dtype="float64", input_range=box) for s in (0, 1)]
    stack = StackedMLP(models)
    x = tf.stack([points("float64", 2, box, seed=s) for s in (0, 1)])
    got = bilaplacian(stack, x)
    assert got.bilaplacian.shape == (2, 30, 1)
    for s, model in enumerate(models):
        alone = bilaplacian(model, x[s])
        np.testing.assert_allclose(got.bilaplacian[s].numpy(), alone.bilaplacian.numpy(), 1e-12)
        np.testing.assert_allclose(got.hessian[(0, 2)][s].numpy(), alone.hessian[(0, 2)].numpy())
    with pytest.raises(ValueError, match="forward mode only"):
        bilaplacian(stack, x, mode="tape")


# -- validation ---------------------------------------------------------------------------------
def test_argument_validation():
    model = pinnlib.mlp(2, 1, 4)
    x = points("float32", 2, ((-1, -1), (1, 1)))
    with pytest.raises(ValueError, match="mode must be one of"):
        bilaplacian(model, x, mode="reverse")
    with pytest.raises(ValueError, match="points must have shape"):
        bilaplacian(model, tf.zeros([3], tf.float32))
    with pytest.raises(TypeError, match="float64"):
        bilaplacian(model, tf.cast(x, tf.float64))
    with pytest.raises(ValueError, match="columns"):
        bilaplacian(model, tf.zeros([3, 3], tf.float32))
