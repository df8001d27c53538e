"""Causal weighting of a time-dependent PDE's residual (Wang, Sankaran & Perdikaris 2024).

A PINN of an evolution equation sees every time at once, so it can lower the residual at late
times around a wrong solution before the early times, which decide everything after them, are
right. Wang, Sankaran & Perdikaris ("Respecting causality for training physics-informed neural
networks", Comput. Methods Appl. Mech. Eng. 421 (2024) 116813; arXiv:2203.07404) split the time
axis into ``M`` slabs, take the residual loss of each slab, ``L_r^k``, and weight slab ``k`` by
how well every earlier slab is already resolved::

    L_r = (1 / M) * sum_k w_k * L_r^k,    w_k = exp(-eps * sum_{j<k} L_r^j),   w_0 = 1,

with the weights held constant in the gradient (no gradient flows through ``w``). A slab starts
to count only once the residual before it is small; ``eps`` (the *causality parameter*) sets
how small. Their paper raises ``eps`` over a schedule; the "expert's guide" (Wang, Sankaran,
Wang & Perdikaris 2023, arXiv:2308.08468) uses one fixed ``eps = 1`` and 32 slabs, the
defaults here.

:class:`Causal` wraps any pinnlib PDE with a time coordinate named ``"t"`` and changes one term
(the PDE residual); every other term, the sampling and the exact
solution are the wrapped problem's. The weighted term is the wrapped problem's first term,
computed on its ``points["interior"]`` (true of every pinnlib PDE: ``L_f``). It acts inside the loss itself, so it combines with any
balancer: the balancer then weighs the causally weighted residual against the initial and
boundary terms. The slabs are equal intervals of ``t``; points are drawn afresh every step, so
a slab's loss is the mean over the points that fall in it this step (a slab without points
adds nothing). Introduced in the chapter "Balancing schemes".
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from ..nn import model_dtype
from ..validation import check_int, check_positive
from .base import PDE

__all__ = ["Causal"]


class Causal(PDE):
    """A PDE whose residual term is weighted causally over ``slabs`` slabs of time.

    Args:
        pde: a pinnlib PDE with a coordinate named ``"t"`` (e.g. :class:`pinnlib.Burgers`).
        slabs: number of equal time slabs ``M`` (>= 2).
        tolerance: the causality parameter ``eps`` (> 0).
    """

    supports_stacking = False  # the slab means are taken over one network's points

    def __init__(self, pde: PDE, slabs: int = 32, tolerance: float = 1.0):
        if not isinstance(pde, PDE):
            raise TypeError(f"pde must be a pinnlib PDE, got {type(pde).__name__}")
        if "t" not in pde.coordinates:
            raise ValueError(
                f"causal weighting needs a time coordinate named 't'; {type(pde).__name__} has "
                f"coordinates {pde.coordinates}"
            )
        self.pde = pde
        self.slabs = check_int("slabs", slabs, 2)
        self.tolerance = check_positive("tolerance", tolerance)
        self.term = pde.term_names[0]  # the PDE residual, on points["interior"]
        self.term_names = pde.term_names
        self.coordinates = pde.coordinates
        self.lower, self.upper = pde.lower, pde.upper
        self.min_boundary = pde.min_boundary
        self._time = pde.coordinates.index("t")

    # -- everything but the weighted term is the wrapped problem's ------------------------
    def sample(self, n_interior, n_boundary, generator=None, dtype="float32"):
        return self.pde.sample(n_interior, n_boundary, generator, dtype)

    def check_sizes(self, n_interior, n_boundary):
        self.pde.check_sizes(n_interior, n_boundary)

    def residuals(self, model, points, mode="auto"):
        return self.pde.residuals(model, points, mode=mode)

    def exact(self, points):
        return self.pde.exact(points)

    def check_model(self, model):
        self.pde.check_model(model)

    # -- the causal weights ----------------------------------------------------------------
    def slab_losses(self, residual: tf.Tensor, t: tf.Tensor) -> tf.Tensor:
        """``L_r^k``: the mean squared residual of the points in each slab, shape ``(M,)``."""
        t0, t1 = self.lower[self._time], self.upper[self._time]
        position = (tf.reshape(t, [-1]) - t0) / (t1 - t0) * self.slabs
        slab = tf.clip_by_value(tf.cast(tf.floor(position), tf.int32), 0, self.slabs - 1)
        squares = tf.reshape(tf.square(residual), [-1])
        return tf.math.unsorted_segment_mean(squares, slab, self.slabs)

    def slab_weights(self, slab_losses: tf.Tensor) -> tf.Tensor:
        """``w_k = exp(-eps * sum_{j<k} L_r^j)`` (constants: no gradient flows through them)."""
        before = tf.math.cumsum(tf.stop_gradient(slab_losses), exclusive=True)
        return tf.exp(-tf.cast(self.tolerance, slab_losses.dtype) * before)

    def losses(self, model, points, mode="auto") -> list[tf.Tensor]:
        res = self.residuals(model, points, mode=mode)
        out = []
        for name in self.term_names:
            if name != self.term:
                out.append(tf.reduce_mean(tf.square(res[name]), axis=[-2, -1]))
                continue
            t = points["interior"][..., self._time]
            per_slab = self.slab_losses(res[name], t)
            out.append(tf.reduce_mean(self.slab_weights(per_slab) * per_slab))
        return out

    def weights(self, model, n: int = 4096, seed: int = 0) -> np.ndarray:
        """The slab weights ``w_k`` of ``model`` now, on ``n`` fresh points: shape ``(M,)``.

        Wang et al. read training progress from them: once the last slab's weight is near one
        (their stopping criterion: ``min w > 0.99``), the residual is resolved at every time.
        """
        n = check_int("n", n, self.slabs)
        dtype = model_dtype(model)
        points = self.sample(n, self.min_boundary, tf.random.Generator.from_seed(seed), dtype)
        res = self.residuals(model, points)
        t = points["interior"][..., self._time]
        return self.slab_weights(self.slab_losses(res[self.term], t)).numpy()

    # -- saving ----------------------------------------------------------------------------
    def get_config(self) -> dict:
        return {
            "pde": keras.saving.serialize_keras_object(self.pde),
            "slabs": self.slabs,
            "tolerance": self.tolerance,
        }

    @classmethod
    def from_config(cls, config: dict) -> Causal:
        config = dict(config)
        if isinstance(config["pde"], dict):
            config["pde"] = keras.saving.deserialize_keras_object(config["pde"])
        return cls(**config)

    def __repr__(self) -> str:
        return f"Causal({self.pde!r}, slabs={self.slabs}, tolerance={self.tolerance})"
