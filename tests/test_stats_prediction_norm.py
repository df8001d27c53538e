"""pinnlib.stats.prediction_norm: ||u_hat|| / ||u|| on the grid, the number behind is_collapsed."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from pinnlib import Helmholtz, Kirchhoff
from pinnlib.stats import is_collapsed, prediction_norm


class Closed(keras.Model):
    """A float64 Keras model whose output is ``fn(x, y)``."""

    def __init__(self, fn):
        super().__init__(dtype="float64")
        self.fn = fn

    def call(self, p):
        return self.fn(p[:, :1], p[:, 1:2])


def helmholtz_exact(x, y):
    return tf.sin(math.pi * x) * tf.sin(4 * math.pi * y)


@pytest.mark.parametrize("factor", [0.0, 0.01, 0.5, 1.0, 3.0])
def test_scaled_exact_solution_has_that_norm(factor):
    # A network that outputs c * u has ||u_hat|| / ||u|| = |c| exactly, whatever the grid.
    model = Closed(lambda x, y: factor * helmholtz_exact(x, y))
    assert prediction_norm(model, Helmholtz(), n=32) == pytest.approx(factor, abs=1e-12)


def test_zero_network_is_collapsed_and_exact_is_not():
    pde = Kirchhoff()
    zero = Closed(lambda x, y: tf.zeros_like(x))
    peak = pde.peak
    exact = Closed(
        lambda x, y: peak * tf.sin(math.pi * x / pde.width) * tf.sin(math.pi * y / pde.height)
    )
    assert prediction_norm(zero, pde, n=16) == 0.0
    assert is_collapsed(prediction_norm(zero, pde, n=16))
    assert prediction_norm(exact, pde, n=16) == pytest.approx(1.0, rel=1e-9)
    assert not is_collapsed(prediction_norm(exact, pde, n=16))


def test_matches_numpy_on_the_grid():
    # An independent re-derivation: a shifted field, norms computed with NumPy on pde.grid.
    pde = Helmholtz()
    model = Closed(lambda x, y: helmholtz_exact(x, y) + 0.3 * x)
    grid, _ = pde.grid(24)
    x, y = grid[:, 0], grid[:, 1]
    u = np.sin(np.pi * x) * np.sin(4 * np.pi * y)
    expected = np.linalg.norm(u + 0.3 * x) / np.linalg.norm(u)
    assert prediction_norm(model, pde, n=24) == pytest.approx(expected, rel=1e-9)
