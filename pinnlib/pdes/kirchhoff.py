"""Kirchhoff plate bending: a fourth-order problem with mixed-order boundary conditions.

A simply supported rectangular plate ``[0, W] x [0, H]`` under a sinusoidal load::

    D (w_xxxx + 2 w_xxyy + w_yyyy) = p,    p = p0 sin(pi x / W) sin(pi y / H),
    D = E h^3 / (12 (1 - nu^2)).

Simply supported edges carry no deflection and no bending moment normal to the edge:
``w = 0`` everywhere on the boundary; ``M_x = -D (w_xx + nu w_yy) = 0`` on ``x = 0, W`` and
``M_y = -D (nu w_xx + w_yy) = 0`` on ``y = 0, H``. Navier's solution (Timoshenko &
Woinowsky-Krieger 1959) is ``w = p0 / (pi^4 D (1/W^2 + 1/H^2)^2) sin(pi x/W) sin(pi y/H)``.

The terms carry different units (load, length, moment per length), so their sizes depend on
the unit system: the chapter "Units" shows what that does to an unweighted loss. Defaults are
in metres and MN (D = 20.8333 MN m, peak deflection 0.018479 m). Introduced in the chapter
"Kirchhoff plate".
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ..derivatives import bilaplacian, forward_supported
from .base import PDE, check_positive

__all__ = ["Kirchhoff"]

_EDGES = ("left", "right", "bottom", "top")


class Kirchhoff(PDE):
    """Simply supported Kirchhoff plate.

    Args:
        width, height: plate size W, H (> 0).
        E: Young's modulus (> 0).
        thickness: plate thickness h (> 0).
        nu: Poisson's ratio in [0, 0.5).
        p0: load amplitude (> 0).
        boundary: ``"grouped"`` gives the article's three terms (``L_f``, ``L_b0`` deflection on
            all edges, ``L_b2`` moments on all edges); ``"separate"`` gives ``L_f`` and eight
            terms ``w_<edge>``, ``M_<edge>`` for edges left, right, bottom, top (as the original
            code offers).
    """

    coordinates = ("x", "y")
    min_boundary = 4
    supports_stacking = True

    def __init__(
        self,
        width: float = 10.0,
        height: float = 10.0,
        E: float = 30000.0,
        thickness: float = 0.2,
        nu: float = 0.2,
        p0: float = 0.015,
        boundary: str = "grouped",
    ):
        self.width = check_positive("width", width)
        self.height = check_positive("height", height)
        self.E = check_positive("E", E)
        self.thickness = check_positive("thickness", thickness)
        try:
            nu = float(nu)
        except (TypeError, ValueError):
            raise TypeError(f"nu must be a number, got {nu!r}") from None
        if not 0.0 <= nu < 0.5:  # also rejects NaN
            raise ValueError(f"nu must be in [0, 0.5), got {nu!r}")
        self.nu = nu
        self.p0 = check_positive("p0", p0)
        if boundary not in ("grouped", "separate"):
            raise ValueError(f"boundary must be 'grouped' or 'separate', got {boundary!r}")
        self.boundary = boundary
        self.lower, self.upper = (0.0, 0.0), (self.width, self.height)
        if boundary == "grouped":
            self.term_names = ("L_f", "L_b0", "L_b2")
        else:
            self.term_names = (
                ("L_f",) + tuple(f"w_{e}" for e in _EDGES) + tuple(f"M_{e}" for e in _EDGES)
            )

    @property
    def D(self) -> float:
        """Flexural rigidity ``E h^3 / (12 (1 - nu^2))``."""
        return self.E * self.thickness**3 / (12.0 * (1.0 - self.nu**2))

    @property
    def peak(self) -> float:
        """Navier amplitude: the deflection at the centre of the plate."""
        s = 1.0 / self.width**2 + 1.0 / self.height**2
        return self.p0 / (np.pi**4 * self.D * s**2)

    def sample(self, n_interior, n_boundary, generator=None, dtype="float32"):
        self.check_sizes(n_interior, n_boundary)
        generator = generator or tf.random.get_global_generator()
        points = {"interior": self.uniform_points(generator, n_interior, dtype)}
        points.update(self.edge_points(generator, n_boundary, dtype))
        return points

    def load(self, points):
        x, y = points[..., :1], points[..., 1:]
        return self.p0 * tf.sin(np.pi * x / self.width) * tf.sin(np.pi * y / self.height)

    def biharmonic(self, model, points, mode="auto"):
        """``w_xxxx + 2 w_xxyy + w_yyyy`` at ``points``.

        Forward mode (a :func:`pinnlib.mlp` under ``"auto"``, or ``"forward"``) carries the
        bi-Laplacian itself through the layers (:func:`pinnlib.bilaplacian`, 9 blocks instead of
        the 17 of four directional fourth-order jets); ``"tape"`` sums nested-tape derivatives.
        """
        self.check_model(model)
        if mode == "forward" or (mode == "auto" and forward_supported(model, [], 2)):
            return bilaplacian(model, points, mode="forward").bilaplacian
        (inner,) = self.network_derivatives(model, [points], [(4, 0), (2, 2), (0, 4)], mode)
        return inner[(4, 0)] + 2.0 * inner[(2, 2)] + inner[(0, 4)]

    def residuals(self, model, points, mode="auto"):
        # Fourth derivatives in the interior, second derivatives (moments) on the edges.
        biharmonic = self.biharmonic(model, points["interior"], mode)
        edges = self.network_derivatives(model, [points[e] for e in _EDGES], [(2, 0), (0, 2)], mode)
        D, nu = self.D, self.nu
        res = {"L_f": D * biharmonic - self.load(points["interior"])}
        w, moment = {}, {}
        for name, d in zip(_EDGES, edges):
            w[name] = d[(0, 0)]
            if name in ("left", "right"):
                moment[name] = -D * (d[(2, 0)] + nu * d[(0, 2)])
            else:
                moment[name] = -D * (nu * d[(2, 0)] + d[(0, 2)])
        if self.boundary == "grouped":
            res["L_b0"] = tf.concat([w[e] for e in _EDGES], axis=-2)
            res["L_b2"] = tf.concat([moment[e] for e in _EDGES], axis=-2)
        else:
            res.update({f"w_{e}": w[e] for e in _EDGES})
            res.update({f"M_{e}": moment[e] for e in _EDGES})
        return res

    def exact(self, points):
        p = self.check_points(points)
        w = self.peak * np.sin(np.pi * p[:, 0] / self.width) * np.sin(np.pi * p[:, 1] / self.height)
        return w[:, None]

    def __repr__(self):
        return (
            f"Kirchhoff(width={self.width}, height={self.height}, E={self.E}, "
            f"thickness={self.thickness}, nu={self.nu}, p0={self.p0}, boundary={self.boundary!r})"
        )
