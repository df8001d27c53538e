"""Tests of pinnlib.constraints: hard Dirichlet conditions ``u = g + d * N``.

Checked against independent facts: the distance function's closed form, exact boundary values
on the points the PDEs sample, the Laplacian of the forward product-rule path against nested
tapes through the whole model and against the product rule written out by hand, and a training
run whose boundary term stays exactly zero.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import pinnlib
from pinnlib.derivatives import forward_supported


def points(n=64, seed=0, lower=(-1.0, -1.0), upper=(1.0, 1.0), dtype="float64"):
    rng = np.random.default_rng(seed)
    return tf.constant(rng.uniform(lower, upper, (n, 2)), dtype)


def unit_box():
    return pinnlib.BoxDistance((-1.0, -1.0), (1.0, 1.0))


def test_box_distance_closed_form():
    lower, upper = (0.0, -2.0), (10.0, 3.0)
    x = points(lower=lower, upper=upper).numpy()
    d = pinnlib.BoxDistance(lower, upper)(tf.constant(x)).numpy()
    assert d.dtype == np.float64
    expected = (x[:, 0] * (10 - x[:, 0]) / 25) * ((x[:, 1] + 2) * (3 - x[:, 1]) / 6.25)
    np.testing.assert_allclose(d[:, 0], expected, rtol=1e-12)
    assert np.all(d > 0)
    centre = pinnlib.BoxDistance(lower, upper)(tf.constant([[5.0, 0.5]], tf.float64))
    assert float(centre[0, 0]) == pytest.approx(1.0, rel=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("pde", [pinnlib.Helmholtz(), pinnlib.Kirchhoff()], ids=repr)
def test_zero_on_sampled_edges(pde, dtype):
    model = pinnlib.HardBC(
        pinnlib.mlp(2, 2, 16, seed=3, dtype=dtype, input_range=(pde.lower, pde.upper)),
        pinnlib.BoxDistance(pde.lower, pde.upper),
    )
    sampled = pde.sample(8, 64, tf.random.Generator.from_seed(1), dtype)
    edges = tf.concat([v for k, v in sampled.items() if k != "interior"], axis=0)
    assert edges.shape[0] == 64
    assert np.all(model(edges).numpy() == 0.0)  # exactly, not approximately
    inside = pde.sample(64, 4, tf.random.Generator.from_seed(2), dtype)["interior"]
    assert np.all(model(inside).numpy() != 0.0)


def lift(p):  # boundary data x^2 y + sin(y), extended by itself; its Laplacian is 2y - sin(y)
    return p[:, :1] ** 2 * p[:, 1:] + tf.sin(p[:, 1:])


def test_lift_gives_the_boundary_values():
    model = pinnlib.HardBC(pinnlib.mlp(2, 2, 8, seed=0, dtype="float64"), unit_box(), lift=lift)
    edges = pinnlib.Helmholtz().sample(4, 40, tf.random.Generator.from_seed(0), "float64")
    b = edges["boundary"]
    np.testing.assert_array_equal(model(b).numpy(), lift(b).numpy())


@pytest.mark.parametrize("with_lift", [False, True])
def test_forward_laplacian_equals_nested_tapes(with_lift):
    model = pinnlib.HardBC(
        pinnlib.mlp(2, 3, 16, seed=5, dtype="float64"), unit_box(), lift=lift if with_lift else None
    )
    x = points(seed=7)
    assert not forward_supported(model, [(2, 0), (0, 2)])  # the general path would use tapes
    u_f, lap_f = pinnlib.laplacian(model, x, mode="forward")
    u_a, lap_a = pinnlib.laplacian(model, x)  # "auto" takes the same product-rule path
    u_t, lap_t = pinnlib.laplacian(model, x, mode="tape")  # nested tapes through everything
    np.testing.assert_allclose(u_f.numpy(), u_t.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(lap_f.numpy(), lap_t.numpy(), rtol=1e-10, atol=1e-11)
    np.testing.assert_array_equal(lap_a.numpy(), lap_f.numpy())


def test_laplacian_follows_the_product_rule_by_hand():
    # lap(d N) = d lap(N) + 2 grad(d).grad(N) + N lap(d), with d = (1 - x^2)(1 - y^2) by hand.
    net = pinnlib.mlp(2, 3, 16, seed=5, dtype="float64")
    model = pinnlib.HardBC(net, unit_box())
    x = points(seed=8)
    u, lap = pinnlib.laplacian(model, x)
    dn = pinnlib.derivatives(net, x, [(1, 0), (0, 1), (2, 0), (0, 2)], mode="tape")
    px, py = x.numpy()[:, :1], x.numpy()[:, 1:]
    d, dx, dy = (1 - px**2) * (1 - py**2), -2 * px * (1 - py**2), -2 * py * (1 - px**2)
    lap_d = -2 * (1 - py**2) - 2 * (1 - px**2)
    n = dn[(0, 0)].numpy()
    expected = (
        d * (dn[(2, 0)] + dn[(0, 2)]).numpy()
        + 2 * (dx * dn[(1, 0)].numpy() + dy * dn[(0, 1)].numpy())
        + n * lap_d
    )
    np.testing.assert_allclose(u.numpy(), d * n, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(lap.numpy(), expected, rtol=1e-10, atol=1e-12)


def test_a_network_forward_mode_does_not_know_takes_tapes():
    net = keras.Sequential(
        [keras.Input((2,)), keras.layers.Dense(8, "relu"), keras.layers.Dense(1)]
    )
    model = pinnlib.HardBC(net, unit_box())
    x = points(dtype="float32")
    with pytest.raises(ValueError, match="forward mode supports pinnlib.mlp"):
        pinnlib.laplacian(model, x, mode="forward")
    auto, tape = pinnlib.laplacian(model, x), pinnlib.laplacian(model, x, mode="tape")
    np.testing.assert_array_equal(auto[1].numpy(), tape[1].numpy())


def test_training_leaves_the_boundary_term_exactly_zero(small):
    pde = pinnlib.Helmholtz()
    net = pinnlib.mlp(2, 2, 16, seed=0)
    model = pinnlib.HardBC(net, pinnlib.BoxDistance(pde.lower, pde.upper))
    assert [v.path for v in model.trainable_variables] == [v.path for v in net.trainable_variables]
    before = [v.numpy().copy() for v in net.trainable_variables]
    history = pinnlib.train(model, pde, steps=30, seed=0, **small)
    assert np.all(history.losses[:, 1] == 0.0)
    assert np.all(history.losses[:, 0] > 0.0)
    assert any(not np.array_equal(b, v.numpy()) for b, v in zip(before, net.trainable_variables))


def test_bad_arguments():
    net = pinnlib.mlp(2, 1, 4, seed=0)
    with pytest.raises(ValueError, match="upper > lower"):
        pinnlib.BoxDistance((0, 1), (1, 1))
    with pytest.raises(ValueError, match="one value per coordinate"):
        pinnlib.BoxDistance((0, 0), (1, 1, 1))
    with pytest.raises(TypeError, match="distance must be a Keras layer or a callable"):
        pinnlib.HardBC(net, 1.0)
    with pytest.raises(TypeError, match="network must be a built Keras model"):
        pinnlib.HardBC(lambda p: p, unit_box())
    with pytest.raises(TypeError, match="network must be a built Keras model"):
        pinnlib.HardBC(keras.layers.Dense(1), unit_box())
