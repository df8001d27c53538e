"""Tests of pinnlib.derivatives: forward mode against nested tapes, tapes against closed forms."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import pinnlib
from pinnlib.derivatives import (
    derivatives,
    forward_derivatives,
    forward_supported,
    tape_derivatives,
)

INDICES = [(1, 0), (0, 1), (2, 0), (0, 2), (1, 1), (4, 0), (0, 4), (2, 2)]
RANGE = ([0.0, -1.0], [10.0, 3.0])  # a non-square box, so the input map differs per axis


def points(dtype, n=40, box=((-1.0, -1.0), (1.0, 1.0)), seed=0):
    lo, hi = np.asarray(box[0]), np.asarray(box[1])
    return tf.constant(np.random.default_rng(seed).uniform(lo, hi, (n, lo.size)), dtype)


def assert_agree(got, want, indices, tol):
    """|got - want| <= tol * (largest |want| among the derivatives of the same order)."""
    for a in indices:
        same_order = [b for b in indices if sum(b) == sum(a)]
        scale = max(float(np.max(np.abs(want[b].numpy()))) for b in same_order)
        err = float(np.max(np.abs(got[a].numpy() - want[a].numpy())))
        assert err <= tol * max(scale, 1e-30), f"{a}: error {err:.3e}, scale {scale:.3e}"


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-10), ("float32", 1e-5)])
@pytest.mark.parametrize("activation", ["tanh", "sin"])
@pytest.mark.parametrize("scaled", [False, True])
def test_forward_matches_tapes_2d(dtype, tol, activation, scaled):
    kw = dict(input_range=RANGE, output_scale=0.02) if scaled else {}
    model = pinnlib.mlp(2, 3, 16, activation=activation, seed=1, dtype=dtype, **kw)
    x = points(dtype, box=RANGE if scaled else ((-1.0, -1.0), (1.0, 1.0)))
    fwd = forward_derivatives(model, x, INDICES)
    tape = tape_derivatives(model, x, INDICES)
    assert set(fwd) == set(tape) == {(0, 0), *INDICES}
    for a in fwd:
        assert fwd[a].shape == (40, 1) and fwd[a].dtype == tf.as_dtype(dtype)
    np.testing.assert_allclose(fwd[(0, 0)].numpy(), model(x).numpy(), rtol=1e-6, atol=1e-7)
    assert_agree(fwd, tape, INDICES, tol)
    # The derivatives are not trivially zero (a real check, not 0 == 0).
    for a in INDICES:
        assert np.max(np.abs(tape[a].numpy())) > 1e-8


def test_forward_matches_float64_truth_in_float32():
    """Float32 forward mode against float64 tapes of the same weights."""
    m32 = pinnlib.mlp(2, 2, 12, seed=3, dtype="float32")
    m64 = pinnlib.mlp(2, 2, 12, seed=3, dtype="float64")
    m64.set_weights([w.astype(np.float64) for w in m32.get_weights()])
    x32 = points("float32")
    truth = tape_derivatives(m64, tf.cast(x32, tf.float64), INDICES)
    fwd = forward_derivatives(m32, x32, INDICES)
    assert_agree(fwd, truth, INDICES, 1e-5)


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-10), ("float32", 1e-5)])
@pytest.mark.parametrize("scaled", [False, True])
def test_forward_matches_tapes_1d(dtype, tol, scaled):
    kw = dict(input_range=([0.0], [5.0]), output_scale=3.0) if scaled else {}
    model = pinnlib.mlp(1, 2, 10, activation="sin", seed=2, dtype=dtype, **kw)
    x = points(dtype, box=((0.0,), (5.0,)) if scaled else ((-1.0,), (1.0,)))
    wanted = [(1,), (2,), (3,), (4,)]
    assert_agree(
        forward_derivatives(model, x, wanted), tape_derivatives(model, x, wanted), wanted, tol
    )


def test_input_range_and_output_scale_change_derivatives_by_the_chain_rule():
    """With u(x) = s * f(2 (x - lo) / (hi - lo) - 1), d^k u = s * (2 / (hi - lo))^k f^(k)."""
    plain = pinnlib.mlp(2, 2, 8, seed=4, dtype="float64")
    lo, hi = np.array([0.0, -1.0]), np.array([10.0, 3.0])
    mapped = pinnlib.mlp(2, 2, 8, seed=4, dtype="float64", input_range=(lo, hi), output_scale=0.5)
    x = points("float64", box=(lo, hi))
    unit = tf.constant(2.0 * (x.numpy() - lo) / (hi - lo) - 1.0)
    d_plain = forward_derivatives(plain, unit, INDICES)
    d_mapped = forward_derivatives(mapped, x, INDICES)
    c = 2.0 / (hi - lo)
    for a in INDICES:
        factor = 0.5 * c[0] ** a[0] * c[1] ** a[1]
        np.testing.assert_allclose(
            d_mapped[a].numpy(), factor * d_plain[a].numpy(), rtol=1e-10, atol=1e-14
        )


class SinExp(keras.Model):
    """u(x, y) = sin(2x) * exp(y): a model without layers, so only tapes can differentiate it."""

    def __init__(self):
        super().__init__(dtype="float64")

    def call(self, x):
        return tf.sin(2.0 * x[:, :1]) * tf.exp(x[:, 1:])


def sin_exp_derivative(x, a):
    """d^a0/dx d^a1/dy of sin(2x) exp(y) = 2^a0 sin(2x + a0 pi / 2) exp(y)."""
    return 2.0 ** a[0] * np.sin(2.0 * x[:, :1] + a[0] * math.pi / 2) * np.exp(x[:, 1:])


def test_tapes_of_a_subclassed_model_match_closed_form():
    model = SinExp()
    x = points("float64")
    wanted = [*INDICES, (3, 1), (1, 3), (0, 0)]
    got = tape_derivatives(model, x, wanted)
    for a in wanted:
        np.testing.assert_allclose(
            got[a].numpy(), sin_exp_derivative(x.numpy(), a), rtol=1e-12, atol=1e-12
        )
    # "auto" falls back to tapes for a model forward mode does not know.
    assert not forward_supported(model, [(1, 0)], dims=2)
    auto = derivatives(model, x, [(2, 2)])
    np.testing.assert_allclose(
        auto[(2, 2)].numpy(), sin_exp_derivative(x.numpy(), (2, 2)), rtol=1e-12
    )
    with pytest.raises(ValueError, match="forward mode"):
        derivatives(model, x, [(1, 0)], mode="forward")


def test_several_outputs_are_differentiated_separately():
    model = pinnlib.mlp(2, 2, 8, outputs=2, seed=5, dtype="float64")
    x = points("float64")
    got = tape_derivatives(model, x, [(1, 0), (0, 2)])
    assert got[(1, 0)].shape == (40, 2)
    for k in range(2):
        # The same network with only output k kept.
        single = pinnlib.mlp(2, 2, 8, outputs=1, seed=5, dtype="float64")
        weights = model.get_weights()
        single.set_weights([*weights[:-2], weights[-2][:, k : k + 1], weights[-1][k : k + 1]])
        one = tape_derivatives(single, x, [(1, 0), (0, 2)])
        for a in [(1, 0), (0, 2)]:
            np.testing.assert_allclose(got[a][:, k : k + 1].numpy(), one[a].numpy(), rtol=1e-12)


def test_float64_functional_model():
    """A float64 model built with the functional API, u = tanh(w . x + b), through tapes."""
    inputs = keras.Input((2,), dtype="float64")
    layer = keras.layers.Dense(1, activation="tanh", dtype="float64")
    model = keras.Model(inputs, layer(inputs))
    w, b = np.array([[0.7], [-1.3]]), np.array([0.2])
    layer.set_weights([w, b])
    x = points("float64")
    got = derivatives(model, x, [(1, 0), (1, 1)])
    t = np.tanh(x.numpy() @ w + b)
    s1 = 1.0 - t**2
    np.testing.assert_allclose(got[(0, 0)].numpy(), t, rtol=1e-12)
    np.testing.assert_allclose(got[(1, 0)].numpy(), w[0, 0] * s1, rtol=1e-12)
    np.testing.assert_allclose(got[(1, 1)].numpy(), w[0, 0] * w[1, 0] * (-2.0 * t * s1), rtol=1e-12)


def test_input_range_maps_the_box_onto_the_unit_square_exactly_in_float64():
    lo, hi = np.array([0.0, -1.0]), np.array([10.0, 3.0])
    model = pinnlib.mlp(2, 1, 4, seed=0, dtype="float64", input_range=(lo, hi))
    corners = tf.constant([lo, hi, (lo + hi) / 2, lo + 0.3 * (hi - lo)], tf.float64)
    mapped = model.layers[0](corners).numpy()
    np.testing.assert_allclose(mapped, [[-1, -1], [1, 1], [0, 0], [-0.4, -0.4]], rtol=0, atol=1e-14)


def test_unsupported_indices_forward_refuses_auto_falls_back():
    model = pinnlib.mlp(2, 2, 8, seed=6, dtype="float64")
    x = points("float64")
    for bad in [(3, 1), (1, 2), (5, 0)]:
        assert not forward_supported(model, [bad])
        with pytest.raises(ValueError, match="forward mode"):
            forward_derivatives(model, x, [bad])
        with pytest.raises(ValueError, match="forward mode"):
            derivatives(model, x, [bad], mode="forward")
        auto = derivatives(model, x, [bad], mode="auto")
        tape = tape_derivatives(model, x, [bad])
        np.testing.assert_allclose(auto[bad].numpy(), tape[bad].numpy(), rtol=1e-12)


def test_relu_network_falls_back_to_tapes():
    model = keras.Sequential(
        [
            keras.Input((2,), dtype="float64"),
            keras.layers.Dense(4, activation="relu", dtype="float64"),
            keras.layers.Dense(1, dtype="float64"),
        ]
    )
    assert not forward_supported(model, [(1, 0)])
    x = points("float64")
    got = derivatives(model, x, [(1, 0)])
    np.testing.assert_allclose(
        got[(1, 0)].numpy(), tape_derivatives(model, x, [(1, 0)])[(1, 0)].numpy()
    )


def test_mode_and_argument_validation():
    model = pinnlib.mlp(2, 1, 4, seed=0, dtype="float64")
    x = points("float64")
    with pytest.raises(ValueError, match="mode"):
        derivatives(model, x, [(1, 0)], mode="backward")
    with pytest.raises(ValueError, match="multi-index"):
        derivatives(model, x, [(1, 0, 0)])
    with pytest.raises(ValueError, match="multi-index"):
        tape_derivatives(model, x, [(-1, 0)])
    with pytest.raises(ValueError, match="columns"):
        tape_derivatives(model, points("float64", box=((0.0,) * 3, (1.0,) * 3)), [(1, 0, 0)])
    with pytest.raises(ValueError, match="shape"):
        forward_derivatives(model, tf.zeros([3], tf.float64), [(1, 0)])
    with pytest.raises(TypeError, match="float32"):
        forward_derivatives(model, points("float32"), [(1, 0)])


@pytest.mark.parametrize(
    "mode,wanted", [("forward", [(1, 0), (0, 2), (1, 1)]), ("tape", [(2, 0), (1, 1), (2, 2)])]
)
def test_inside_tf_function(mode, wanted):
    model = pinnlib.mlp(2, 2, 8, seed=7, dtype="float64")
    x = points("float64")
    eager = tape_derivatives(model, x, wanted)

    # A batch size unknown at trace time, as inside a training step.
    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float64)])
    def compiled(x):
        return derivatives(model, x, wanted, mode=mode)

    assert_agree(compiled(x), eager, wanted, 1e-10)
    assert_agree(compiled(x[:7]), {k: v[:7] for k, v in eager.items()}, wanted, 1e-10)


def test_single_point():
    model = pinnlib.mlp(2, 2, 8, seed=8, dtype="float64")
    x = points("float64", n=1)
    assert_agree(
        forward_derivatives(model, x, INDICES), tape_derivatives(model, x, INDICES), INDICES, 1e-10
    )


# -- the forward Laplacian -------------------------------------------------------------------
@pytest.mark.parametrize("dtype,tol", [("float64", 1e-10), ("float32", 1e-5)])
@pytest.mark.parametrize("activation", ["tanh", "sin"])
@pytest.mark.parametrize("dims,scaled", [(2, False), (2, True), (3, True), (1, False)])
def test_laplacian_forward_matches_summed_tapes(dtype, tol, activation, dims, scaled):
    box = (np.linspace(0.0, -1.0, dims), np.linspace(4.0, 3.0, dims))
    kw = dict(input_range=box, output_scale=0.5) if scaled else {}
    model = pinnlib.mlp(dims, 3, 16, activation=activation, seed=4, dtype=dtype, **kw)
    x = points(dtype, box=box if scaled else (-np.ones(dims), np.ones(dims)))
    u, lap = pinnlib.laplacian(model, x, mode="forward")
    pure = [tuple(2 if j == i else 0 for j in range(dims)) for i in range(dims)]
    tape = tape_derivatives(model, x, pure)
    want = sum(tape[a].numpy() for a in pure)
    assert u.shape == lap.shape == (40, 1) and lap.dtype == tf.as_dtype(dtype)
    np.testing.assert_allclose(u.numpy(), model(x).numpy(), rtol=1e-6, atol=1e-7)
    scale = max(float(np.max(np.abs(tape[a].numpy()))) for a in pure)
    assert scale > 1e-6  # a real check, not 0 == 0
    assert float(np.max(np.abs(lap.numpy() - want))) <= tol * scale


def test_laplacian_of_a_known_function():
    """A one-unit sin network u = v sin(w.x + b): its Laplacian is -|w|^2 u."""
    model = pinnlib.mlp(2, 1, 1, activation="sin", seed=0, dtype="float64")
    w = model.layers[0].kernel.numpy()[:, 0]
    x = points("float64")
    u, lap = pinnlib.laplacian(model, x)
    bias = model.layers[1].bias.numpy()[0]  # the output is v * sin(.) + bias
    np.testing.assert_allclose(lap.numpy(), -np.sum(w**2) * (u.numpy() - bias), rtol=1e-12)


def test_laplacian_modes_and_fallback():
    x = points("float32")
    model = pinnlib.mlp(2, 2, 8, seed=0)
    fwd = pinnlib.laplacian(model, x, mode="forward")[1].numpy()
    tape = pinnlib.laplacian(model, x, mode="tape")[1].numpy()
    np.testing.assert_allclose(fwd, tape, rtol=1e-4, atol=1e-5)
    other = keras.Sequential(
        [keras.Input((2,)), keras.layers.Dense(8, "softplus"), keras.layers.Dense(1)]
    )
    assert not forward_supported(other, [(2, 0), (0, 2)])
    u, lap = pinnlib.laplacian(other, x)  # "auto" falls back to tapes
    assert lap.shape == (40, 1)
    with pytest.raises(ValueError, match="forward mode supports"):
        pinnlib.laplacian(other, x, mode="forward")
    with pytest.raises(ValueError, match="mode must be one of"):
        pinnlib.laplacian(model, x, mode="reverse")
    with pytest.raises(ValueError, match="points must have shape"):
        pinnlib.laplacian(model, tf.zeros([3], tf.float32))
