"""Helmholtz on [-1, 1]^2: the article's first benchmark (chapter "Helmholtz").

``u_xx + u_yy + k^2 u = q`` with ``q = (k^2 - (a1 pi)^2 - (a2 pi)^2) sin(a1 pi x) sin(a2 pi y)``
and ``u = 0`` on the boundary; exact ``u = sin(a1 pi x) sin(a2 pi y)``. Wang, Teng & Perdikaris
(2021) used it to show gradient pathologies; Bischof & Kraus (2021) to test ReLoBRaLo.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ..derivatives import laplacian
from .base import PDE, check_positive

__all__ = ["Helmholtz"]


class Helmholtz(PDE):
    """Helmholtz with Dirichlet edges. Terms: ``L_f`` (PDE residual), ``L_b`` (edges).

    Args:
        k: wave number (> 0).
        a1, a2: wave counts of the exact solution in x and y (> 0).
    """

    term_names = ("L_f", "L_b")
    coordinates = ("x", "y")
    lower, upper = (-1.0, -1.0), (1.0, 1.0)
    min_boundary = 4
    supports_stacking = True

    def __init__(self, k: float = 1.0, a1: float = 1, a2: float = 4):
        self.k = check_positive("k", k)
        self.a1 = check_positive("a1", a1)
        self.a2 = check_positive("a2", a2)

    def sample(self, n_interior, n_boundary, generator=None, dtype="float32"):
        self.check_sizes(n_interior, n_boundary)
        generator = generator or tf.random.get_global_generator()
        edges = self._edges(generator, n_boundary, dtype)
        return {
            "interior": self._uniform(generator, n_interior, dtype),
            "boundary": tf.concat(list(edges.values()), axis=0),
        }

    def source(self, points):
        x, y = points[..., :1], points[..., 1:]
        a1, a2, k = self.a1 * np.pi, self.a2 * np.pi, self.k
        return (k**2 - a1**2 - a2**2) * tf.sin(a1 * x) * tf.sin(a2 * y)

    def residuals(self, model, points, mode="auto"):
        # Only the Laplacian is needed inside (pinnlib.laplacian carries it alone, not u_xx and
        # u_yy separately); the edges need the value alone.
        self.check_model(model)
        u, lap = laplacian(model, points["interior"], mode)
        return {
            "L_f": lap + self.k**2 * u - self.source(points["interior"]),
            "L_b": model(points["boundary"]),
        }

    def exact(self, points):
        p = self.check_points(points)
        u = np.sin(self.a1 * np.pi * p[:, 0]) * np.sin(self.a2 * np.pi * p[:, 1])
        return u[:, None]

    def __repr__(self):
        return f"Helmholtz(k={self.k}, a1={self.a1}, a2={self.a2})"
