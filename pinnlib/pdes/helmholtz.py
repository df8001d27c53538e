"""Helmholtz on [-1, 1]^2: the article's first benchmark (chapter "Helmholtz").

``u_xx + u_yy + k^2 u = q`` with ``q = (k^2 - (a1 pi)^2 - (a2 pi)^2) sin(a1 pi x) sin(a2 pi y)``
and ``u = 0`` on the boundary; exact ``u = sin(a1 pi x) sin(a2 pi y)``. Wang, Teng & Perdikaris
(2021) used it to show gradient pathologies; Bischof & Kraus (2021) to test ReLoBRaLo.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ..derivatives import laplacian
from ..validation import check_choice
from .base import PDE, check_positive

__all__ = ["Helmholtz"]


class Helmholtz(PDE):
    """Helmholtz with Dirichlet edges. Terms: ``L_f`` (PDE residual), ``L_b`` (edges).

    ``n_boundary`` points are spread evenly over the four edges. ``L_b`` is their mean squared
    value (``edge_loss="mean"``, the book's default), or the *sum* of the four edges' mean squares
    (``edge_loss="sum"``), which is how Wang, Teng & Perdikaris (2021) define the boundary loss in
    their code (``Helmholtz/Helmholtz2D_model_tf.py``: one loss per edge, added up). With equal
    points per edge the sum is four times the mean, so ``"sum"`` asks for ``n_boundary``
    divisible by 4 and multiplies the edge residual by 2 (its mean square by 4).

    Args:
        k: wave number (> 0).
        a1, a2: wave counts of the exact solution in x and y (> 0).
        edge_loss: ``"mean"`` (mean over all edge points) or ``"sum"`` (sum of the four edges'
            mean squares, as Wang et al.'s code).
    """

    term_names = ("L_f", "L_b")
    coordinates = ("x", "y")
    lower, upper = (-1.0, -1.0), (1.0, 1.0)
    min_boundary = 4
    supports_stacking = True

    def __init__(self, k: float = 1.0, a1: float = 1, a2: float = 4, edge_loss: str = "mean"):
        self.k = check_positive("k", k)
        self.a1 = check_positive("a1", a1)
        self.a2 = check_positive("a2", a2)
        self.edge_loss = check_choice("edge_loss", edge_loss, ("mean", "sum"))

    def check_sizes(self, n_interior, n_boundary):
        super().check_sizes(n_interior, n_boundary)
        if self.edge_loss == "sum" and n_boundary % 4:
            raise ValueError(
                f"edge_loss='sum' needs the same number of points on each of the 4 edges: "
                f"n_boundary must be divisible by 4, got {n_boundary}"
            )

    def sample(self, n_interior, n_boundary, generator=None, dtype="float32"):
        self.check_sizes(n_interior, n_boundary)
        generator = generator or tf.random.get_global_generator()
        edges = self.edge_points(generator, n_boundary, dtype)
        return {
            "interior": self.uniform_points(generator, n_interior, dtype),
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
        edges = model(points["boundary"])
        if self.edge_loss == "sum":  # mean square x 4 = the sum over the four equal edges
            edges = 2.0 * edges
        return {"L_f": lap + self.k**2 * u - self.source(points["interior"]), "L_b": edges}

    def exact(self, points):
        p = self.check_points(points)
        u = np.sin(self.a1 * np.pi * p[:, 0]) * np.sin(self.a2 * np.pi * p[:, 1])
        return u[:, None]

    def __repr__(self):
        extra = "" if self.edge_loss == "mean" else f", edge_loss={self.edge_loss!r}"
        return f"Helmholtz(k={self.k}, a1={self.a1}, a2={self.a2}{extra})"
