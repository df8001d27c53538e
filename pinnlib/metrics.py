"""Error metrics against the exact or reference solution on a dense grid.

The headline metric is the relative L2 error ``||u - u_hat||_2 / ||u||_2`` (Wang et al. 2021 and
PINNacle report it); the mean squared error is the article's "validation loss".
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from .nn import model_dtype

__all__ = ["relative_l2_error", "mean_squared_error", "evaluate", "predict"]


def predict(model, points, batch: int = 65536) -> np.ndarray:
    """``model(points)`` as a float64 NumPy array, in batches."""
    points = np.asarray(points)
    dtype = tf.as_dtype(model_dtype(model))
    out = [
        model(tf.constant(points[i : i + batch], dtype), training=False).numpy()
        for i in range(0, len(points), batch)
    ]
    return np.concatenate(out).astype(np.float64)


def evaluate(model, points, exact) -> tuple[float, float]:
    """``(relative L2 error, MSE)`` of ``model`` at ``points`` against ``exact`` values."""
    pred = predict(model, points)
    exact = np.asarray(exact, np.float64).reshape(pred.shape)
    err = pred - exact
    return float(np.linalg.norm(err) / np.linalg.norm(exact)), float(np.mean(err**2))


def relative_l2_error(model, pde, n: int = 256) -> float:
    """Relative L2 error of ``model`` on an ``n``-per-axis grid over ``pde``'s domain."""
    grid, _ = pde.grid(n)
    return evaluate(model, grid, pde.exact(grid))[0]


def mean_squared_error(model, pde, n: int = 256) -> float:
    """Mean squared error of ``model`` on an ``n``-per-axis grid over ``pde``'s domain."""
    grid, _ = pde.grid(n)
    return evaluate(model, grid, pde.exact(grid))[1]
