"""Tests of pinnlib.metrics (errors against the exact solution) and pinnlib.plot (figures)."""

from __future__ import annotations

import math

import keras
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import tensorflow as tf

import pinnlib
from pinnlib import Burgers, Helmholtz, History, Kirchhoff, Poisson1D, cole_hopf
from pinnlib.metrics import evaluate, predict

PI = math.pi


class Closed(keras.Model):
    """A float64 Keras model whose output is ``fn(columns...)``."""

    def __init__(self, fn):
        super().__init__(dtype="float64")
        self.fn = fn

    def call(self, x):
        return self.fn(*[x[:, i : i + 1] for i in range(x.shape[-1])])


def burgers_reference(x, t):
    u = tf.numpy_function(lambda a, b: cole_hopf(a, b)[:, None], [x[:, 0], t[:, 0]], tf.float64)
    return tf.reshape(u, [-1, 1])


EXACT = [
    (Poisson1D(), lambda x: tf.sin(PI * x)),
    (Helmholtz(), lambda x, y: tf.sin(PI * x) * tf.sin(4 * PI * y)),
    (
        Kirchhoff(),
        lambda x, y: Kirchhoff().peak * tf.sin(PI * x / 10) * tf.sin(PI * y / 10),
    ),
    (Burgers(), burgers_reference),
]


@pytest.mark.parametrize("pde,fn", EXACT, ids=lambda v: type(v).__name__)
def test_exact_model_has_zero_error_and_zero_model_has_one(pde, fn):
    exact = Closed(fn)
    assert pinnlib.relative_l2_error(exact, pde, n=24) == pytest.approx(0.0, abs=1e-12)
    assert pinnlib.mean_squared_error(exact, pde, n=24) == pytest.approx(0.0, abs=1e-20)
    zero = Closed(lambda *cols: tf.zeros_like(cols[0]))
    assert pinnlib.relative_l2_error(zero, pde, n=24) == pytest.approx(1.0, rel=1e-12)
    grid, _ = pde.grid(24)
    want_mse = np.mean(pde.exact(grid) ** 2)
    assert pinnlib.mean_squared_error(zero, pde, n=24) == pytest.approx(want_mse, rel=1e-12)
    # Twice the solution is off by the solution itself: relative error one again.
    double = Closed(lambda *cols: 2.0 * fn(*cols))
    assert pinnlib.relative_l2_error(double, pde, n=24) == pytest.approx(1.0, rel=1e-12)


def test_evaluate_against_numpy():
    rng = np.random.default_rng(0)
    pts = rng.uniform(-1, 1, (50, 2))
    exact = rng.normal(size=50)  # a flat array is reshaped to the prediction's shape
    model = Closed(lambda x, y: x * y + 0.1)
    pred = pts[:, :1] * pts[:, 1:] + 0.1
    rel, mse = evaluate(model, pts, exact)
    err = pred[:, 0] - exact
    assert rel == pytest.approx(np.sqrt(np.sum(err**2) / np.sum(exact**2)), rel=1e-12)
    assert mse == pytest.approx(np.mean(err**2), rel=1e-12)


def test_predict_batches_and_dtype():
    model = pinnlib.mlp(2, 1, 4, seed=0)
    pts = np.random.default_rng(1).uniform(-1, 1, (20, 2))
    whole = predict(model, pts)
    assert whole.dtype == np.float64 and whole.shape == (20, 1)
    np.testing.assert_array_equal(predict(model, pts, batch=7), whole)
    np.testing.assert_allclose(whole, model(tf.constant(pts, tf.float32)).numpy(), rtol=1e-6)


def test_predict_keeps_float64_precision_of_a_functional_model():
    inputs = keras.Input((1,), dtype="float64")
    layer = keras.layers.Dense(1, use_bias=False, dtype="float64")
    model = keras.Model(inputs, layer(inputs))
    layer.set_weights([np.ones((1, 1))])  # the identity
    pts = np.array([[1.0 + 1e-12], [0.1]])
    np.testing.assert_array_equal(predict(model, pts), pts)


# -- plots ----------------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def make_history(seed=0, steps=30):
    rng = np.random.default_rng(seed)
    h = History(("L_f", "L_b"))
    losses = 10.0 ** rng.uniform(-3, 1, (steps, 2))
    lambdas = rng.uniform(0.5, 1.5, (steps, 2))
    h.extend(0, losses, lambdas)
    for s in range(0, steps + 1, 10):
        h.record_evaluation(s, 0.5 / (1 + s), 0.1 / (1 + s), 0.01 * s)
    return h


def labels(ax):
    return [line.get_label() for line in ax.get_lines()]


def test_backend_is_headless():
    assert matplotlib.get_backend().lower() == "agg"


def test_plot_losses():
    h = make_history()
    fig = pinnlib.plot_losses(h, title="run")
    assert isinstance(fig, matplotlib.figure.Figure)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "step" and "loss" in ax.get_ylabel()
    assert ax.get_title() == "run" and ax.get_yscale() == "log"
    assert labels(ax) == ["L_f", "L_b"]
    np.testing.assert_array_equal(ax.get_lines()[1].get_ydata(), h.losses[:, 1])
    np.testing.assert_array_equal(ax.get_lines()[0].get_xdata(), h.step)
    # A moving average of 5 has 26 points, placed at the end of each window.
    smooth = pinnlib.plot_losses(h, smooth=5).axes[0].get_lines()[0]
    np.testing.assert_allclose(
        smooth.get_ydata(), np.convolve(h.losses[:, 0], np.ones(5) / 5, "valid")
    )
    np.testing.assert_array_equal(smooth.get_xdata(), np.arange(4, 30))


def test_plot_lambdas_and_given_axes():
    h = make_history()
    fig, ax = plt.subplots()
    assert pinnlib.plot_lambdas(h, ax=ax) is fig
    assert ax.get_xlabel() == "step" and "λ" in ax.get_ylabel() and ax.get_yscale() == "log"
    assert labels(ax) == ["λ for L_f", "λ for L_b"]
    np.testing.assert_array_equal(ax.get_lines()[0].get_ydata(), h.lambdas[:, 0])
    linear = pinnlib.plot_lambdas(h, log=False).axes[0]
    assert linear.get_yscale() == "linear"


def test_plot_error():
    runs = {"unweighted": make_history(0), "ReLoBRaLo": make_history(1)}
    ax = pinnlib.plot_error(runs).axes[0]
    assert ax.get_xlabel() == "step" and ax.get_ylabel() == "relative L2 error"
    assert labels(ax) == ["unweighted", "ReLoBRaLo"]
    np.testing.assert_array_equal(ax.get_lines()[0].get_xdata(), runs["unweighted"].eval_step)
    np.testing.assert_array_equal(ax.get_lines()[0].get_ydata(), runs["unweighted"].rel_l2)
    ax = pinnlib.plot_error(runs, against="time").axes[0]
    assert "time" in ax.get_xlabel()
    np.testing.assert_array_equal(ax.get_lines()[1].get_xdata(), runs["ReLoBRaLo"].time)
    with pytest.raises(ValueError, match="against"):
        pinnlib.plot_error(runs, against="epoch")


def _panels(fig):
    """The three heatmaps of plot_solution: prediction, exact, error (colour bars excluded)."""
    return [ax for ax in fig.axes if ax.get_images() and ax.get_label() != "<colorbar>"]


def test_plot_solution_shares_one_colour_scale_and_shows_the_signed_error():
    pde = Helmholtz()
    # The exact solution shifted up by 0.5: the error is +0.5 everywhere.
    shifted = Closed(lambda x, y: tf.sin(PI * x) * tf.sin(4 * PI * y) + 0.5)
    fig = pinnlib.plot_solution(shifted, pde, n=16, units="m", coordinate_units="km")
    assert isinstance(fig, matplotlib.figure.Figure)
    panels = _panels(fig)
    assert len(panels) == 3
    for ax in panels:
        assert (ax.get_xlabel(), ax.get_ylabel()) == ("x (km)", "y (km)")
        assert ax.get_title().endswith("(m)")
    pred, ref, err = (ax.get_images()[0] for ax in panels)
    grid, shape = pde.grid(16)
    exact = pde.exact(grid).reshape(shape)
    np.testing.assert_allclose(ref.get_array(), exact.T)
    np.testing.assert_allclose(pred.get_array(), exact.T + 0.5, atol=1e-12)
    np.testing.assert_allclose(err.get_array(), 0.5, atol=1e-12)  # signed: PINN - exact
    # One scale for prediction and exact, spanning both; the error's own, symmetric about 0.
    low, high = exact.min(), exact.max() + 0.5
    assert pred.get_clim() == pytest.approx((low, high))
    assert ref.get_clim() == pytest.approx((low, high))
    assert err.get_clim() == pytest.approx((-0.5, 0.5))
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(bars) == 2  # one shared by prediction and exact, one for the error


def test_plot_solution_is_readable_at_phone_width():
    fig = pinnlib.plot_solution(pinnlib.mlp(2, 1, 4, seed=0), Kirchhoff(), n=8, units="m")
    fig.canvas.draw()
    pred, ref, err = (ax.get_position() for ax in _panels(fig))
    # Two panels side by side at most: the error panel sits below the other two.
    assert err.y1 < min(pred.y0, ref.y0)
    # Shrunk to a 400 px phone screen (about 370 px of text column), a tick label keeps a
    # height of at least 6 px.
    width_in = fig.get_size_inches()[0]
    for ax in fig.axes:
        for label in ax.get_xticklabels() + ax.get_yticklabels():
            if label.get_text():
                assert label.get_fontsize() / 72 * 370 / width_in >= 6, label.get_text()


def test_plot_solution_labels_and_wrong_dimension():
    burgers = pinnlib.plot_solution(pinnlib.mlp(2, 1, 4, seed=0), Burgers(), n=8)
    assert [ax.get_xlabel() for ax in _panels(burgers)] == ["x"] * 3
    assert [ax.get_ylabel() for ax in _panels(burgers)] == ["t"] * 3
    # A perfect prediction: its error scale (all zeros) still has a non-zero width.
    exact = Closed(lambda x, y: tf.sin(PI * x) * tf.sin(4 * PI * y))
    err = _panels(pinnlib.plot_solution(exact, Helmholtz(), n=8))[2].get_images()[0]
    np.testing.assert_allclose(err.get_array(), 0.0, atol=1e-12)
    low, high = err.get_clim()
    assert low < 0 < high
    with pytest.raises(ValueError, match="2-D"):
        pinnlib.plot_solution(pinnlib.mlp(1, 1, 4, seed=0), Poisson1D())
