"""Viscous Burgers' equation, with its reference solution by the Cole-Hopf transform.

``u_t + u u_x - nu u_xx = 0`` for ``x`` in [-1, 1], ``t`` in [0, 1], with
``u(x, 0) = -sin(pi x)`` and ``u(-1, t) = u(1, t) = 0``; ``nu = 0.01 / pi`` forms a steep
shock at ``x = 0``. Raissi et al. (2019) used it with a reference solution from a data file; here
the reference is computed. Cole (1951) and Hopf (1950) turn Burgers into the heat equation, so::

    u(x, t) = - int sin(pi (x - s)) f(x - s) G(s) ds / int f(x - s) G(s) ds
    f(y) = exp(-cos(pi y) / (2 pi nu)),   G(s) = exp(-s^2 / (4 nu t)).

With ``s = sqrt(4 nu t) z`` both integrals become Gauss-Hermite quadratures; the largest
exponent is subtracted before exponentiating (``1 / (2 pi nu) = 50`` here). Introduced in the
chapter "Burgers".
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ..validation import check_int
from .base import PDE, check_positive

__all__ = ["Burgers", "cole_hopf"]


def cole_hopf(x, t, nu: float = 0.01 / np.pi, nodes: int = 200, chunk: int = 4096) -> np.ndarray:
    """Reference solution of Burgers' equation at points ``(x, t)`` (arrays of one shape).

    Gauss-Hermite quadrature with ``nodes`` nodes; exact ``-sin(pi x)`` at ``t = 0``.
    """
    nu = check_positive("nu", nu)
    # NumPy's hermgauss overflows (NaN nodes) past about 370; 100 already reach 1e-14 here.
    nodes = check_int("nodes", nodes, 2, 300)
    x, t = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(t, np.float64))
    if np.any(t < 0):
        raise ValueError("t must be >= 0")
    z, w = np.polynomial.hermite.hermgauss(nodes)
    flat_x, flat_t = x.reshape(-1), t.reshape(-1)
    out = -np.sin(np.pi * flat_x)
    live = np.nonzero(flat_t > 0)[0]
    for start in range(0, live.size, chunk):
        idx = live[start : start + chunk]
        y = flat_x[idx, None] - np.sqrt(4.0 * nu * flat_t[idx, None]) * z[None, :]
        exponent = -np.cos(np.pi * y) / (2.0 * np.pi * nu)
        weight = w[None, :] * np.exp(exponent - exponent.max(axis=1, keepdims=True))
        out[idx] = -np.sum(np.sin(np.pi * y) * weight, axis=1) / np.sum(weight, axis=1)
    return out.reshape(x.shape)


class Burgers(PDE):
    """Burgers' equation on ``[-1, 1] x [0, 1]``. Terms: ``L_f``, ``L_ic``, ``L_bc``.

    ``n_boundary`` points are split: half on the initial line ``t = 0``, half on the two walls.

    Args:
        nu: viscosity (> 0); default ``0.01 / pi``.
    """

    term_names = ("L_f", "L_ic", "L_bc")
    coordinates = ("x", "t")
    lower, upper = (-1.0, 0.0), (1.0, 1.0)
    min_boundary = 4
    supports_stacking = True

    def __init__(self, nu: float = 0.01 / np.pi):
        self.nu = check_positive("nu", nu)

    def sample(self, n_interior, n_boundary, generator=None, dtype="float32"):
        self.check_sizes(n_interior, n_boundary)
        generator = generator or tf.random.get_global_generator()
        n_ic = n_boundary // 2
        n_left = (n_boundary - n_ic) // 2
        n_right = n_boundary - n_ic - n_left
        x_ic = generator.uniform([n_ic, 1], -1.0, 1.0, dtype=dtype)
        t_wall = generator.uniform([n_left + n_right, 1], 0.0, 1.0, dtype=dtype)
        x_wall = tf.concat([-tf.ones([n_left, 1], dtype), tf.ones([n_right, 1], dtype)], 0)
        return {
            "interior": self.uniform_points(generator, n_interior, dtype),
            "initial": tf.concat([x_ic, tf.zeros_like(x_ic)], axis=1),
            "walls": tf.concat([x_wall, t_wall], axis=1),
        }

    def residuals(self, model, points, mode="auto"):
        (inner,) = self.network_derivatives(
            model, [points["interior"]], [(1, 0), (2, 0), (0, 1)], mode
        )
        ic, walls = self.network_derivatives(model, [points["initial"], points["walls"]], [], mode)
        u = inner[(0, 0)]
        x0 = points["initial"][..., :1]
        return {
            "L_f": inner[(0, 1)] + u * inner[(1, 0)] - self.nu * inner[(2, 0)],
            "L_ic": ic[(0, 0)] + tf.sin(np.pi * x0),
            "L_bc": walls[(0, 0)],
        }

    def exact(self, points):
        p = self.check_points(points)
        return cole_hopf(p[:, 0], p[:, 1], self.nu)[:, None]

    def __repr__(self):
        return f"Burgers(nu={self.nu})"
