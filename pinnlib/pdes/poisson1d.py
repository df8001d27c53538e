"""Poisson in one dimension: the first PINN of the book ("A PINN from scratch").

``u'' = -pi^2 sin(pi x)`` on [0, 1] with ``u(0) = u(1) = 0``; exact ``u = sin(pi x)``.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from .base import PDE

__all__ = ["Poisson1D"]


class Poisson1D(PDE):
    """``u'' = -pi^2 sin(pi x)`` on [0, 1], ``u = 0`` at both ends. Terms: L_f, L_b.

    The boundary set is the two end points, whatever ``n_boundary`` is.
    """

    term_names = ("L_f", "L_b")
    coordinates = ("x",)
    lower, upper = (0.0,), (1.0,)
    supports_stacking = True

    def sample(self, n_interior, n_boundary, generator=None, dtype="float32"):
        self.check_sizes(n_interior, n_boundary)
        generator = generator or tf.random.get_global_generator()
        return {
            "interior": self.uniform_points(generator, n_interior, dtype),
            "boundary": tf.constant([[0.0], [1.0]], dtype=dtype),
        }

    def source(self, x):
        return -(np.pi**2) * tf.sin(np.pi * x)

    def residuals(self, model, points, mode="auto"):
        (inner,) = self.network_derivatives(model, [points["interior"]], [(2,)], mode)
        (edge,) = self.network_derivatives(model, [points["boundary"]], [], mode)
        return {
            "L_f": inner[(2,)] - self.source(points["interior"]),
            "L_b": edge[(0,)],
        }

    def exact(self, points):
        x = self.check_points(points)
        return np.sin(np.pi * x)
