"""Tests of pinnlib.constraints: hard Dirichlet conditions ``u = g + d * N``.

Checked against independent facts: the distance function's closed form, exact boundary values
on the points the PDEs sample, the product rule for the Laplacian (the wrapper's nested-tape
derivatives against the inner network's forward-mode derivatives combined with ``d``'s
derivatives written out by hand) and a training run whose boundary term stays exactly zero.
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
    model = pinnlib.hard_bc(
        pinnlib.mlp(2, 2, 16, seed=3, dtype=dtype, input_range=(pde.lower, pde.upper)),
        pinnlib.BoxDistance(pde.lower, pde.upper),
    )
    sampled = pde.sample(8, 64, tf.random.Generator.from_seed(1), dtype)
    edges = tf.concat([v for k, v in sampled.items() if k != "interior"], axis=0)
    assert edges.shape[0] == 64
    assert np.all(model(edges).numpy() == 0.0)  # exactly, not approximately
    inside = pde.sample(64, 4, tf.random.Generator.from_seed(2), dtype)["interior"]
    assert np.all(model(inside).numpy() != 0.0)


def test_lift_gives_the_boundary_values():
    def g(p):  # boundary data x + 2y, extended by itself
        return p[:, :1] + 2.0 * p[:, 1:]

    model = pinnlib.hard_bc(
        pinnlib.mlp(2, 2, 8, seed=0, dtype="float64"),
        pinnlib.BoxDistance((-1, -1), (1, 1)),
        lift=g,
    )
    edges = pinnlib.Helmholtz().sample(4, 40, tf.random.Generator.from_seed(0), "float64")
    b = edges["boundary"]
    np.testing.assert_array_equal(model(b).numpy(), g(b).numpy())


def test_laplacian_follows_the_product_rule():
    # lap(d N) = d lap(N) + 2 grad(d).grad(N) + N lap(d), with d = (1 - x^2)(1 - y^2):
    # N's derivatives by forward mode, d's by hand, against nested tapes through the wrapper.
    net = pinnlib.mlp(2, 3, 16, seed=5, dtype="float64")
    model = pinnlib.hard_bc(net, pinnlib.BoxDistance((-1, -1), (1, 1)))
    x = points(seed=7)
    assert not forward_supported(model, [(2, 0), (0, 2)])
    u, lap = pinnlib.laplacian(model, x)  # nested tapes (auto falls back)
    wanted = [(1, 0), (0, 1), (2, 0), (0, 2)]
    dn = pinnlib.derivatives(net, x, wanted, mode="forward")
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


def test_forward_mode_is_refused_with_a_clear_error():
    model = pinnlib.hard_bc(pinnlib.mlp(2, 2, 8, seed=0), pinnlib.BoxDistance((-1, -1), (1, 1)))
    with pytest.raises(ValueError, match="forward mode supports pinnlib.mlp"):
        pinnlib.laplacian(model, points(dtype="float32"), mode="forward")


def test_training_leaves_the_boundary_term_exactly_zero(small):
    pde = pinnlib.Helmholtz()
    net = pinnlib.mlp(2, 2, 16, seed=0)
    model = pinnlib.hard_bc(net, pinnlib.BoxDistance(pde.lower, pde.upper))
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
        pinnlib.hard_bc(net, 1.0)
    with pytest.raises(TypeError, match="network must be a built Keras model"):
        pinnlib.hard_bc(lambda p: p, pinnlib.BoxDistance((0, 0), (1, 1)))
    with pytest.raises(TypeError, match="network must be a built Keras model"):
        pinnlib.hard_bc(keras.layers.Dense(1), pinnlib.BoxDistance((0, 0), (1, 1)))
