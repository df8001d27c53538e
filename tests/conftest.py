"""Shared test settings and fixtures.

A headless Matplotlib backend and a Hypothesis profile for TensorFlow: TensorFlow ops run
eagerly here and cost milliseconds each, so Hypothesis gets no deadline and a modest number of
examples (the unit suite must stay within a few minutes on two cores).

Fixtures for the training tests: ``small`` (tiny point sets, no XLA, no progress bar),
``tiny`` (a factory of small seeded networks for a PDE) and ``blows_up`` (a Helmholtz problem
whose edge loss turns infinite at a chosen step).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

import pinnlib  # noqa: E402

settings.register_profile(
    "pinnlib",
    deadline=None,
    max_examples=25,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)
settings.load_profile("pinnlib")


@pytest.fixture
def small() -> dict:
    """Keyword arguments of a quick training call: few points, a coarse grid, no XLA."""
    return dict(n_interior=64, n_boundary=32, eval_points=16, progress=False, jit_compile=False)


def _tiny(pde, seed=0, dtype="float32", name="mlp"):
    box = (list(pde.lower), list(pde.upper))
    return pinnlib.mlp(pde.dims, 2, 16, seed=seed, dtype=dtype, input_range=box, name=name)


@pytest.fixture
def tiny():
    """``tiny(pde, seed=0, dtype="float32", name="mlp")``: a 2 x 16 tanh mlp over the domain."""
    return _tiny


class BlowsUp(pinnlib.Helmholtz):
    """Helmholtz whose edge residual becomes infinite at one step (counted per evaluation).

    ``name``: only the network of that name blows up (runs with separate networks);
    ``which``: only network ``which`` of a stack (the class then promises stacking).
    """

    def __init__(self, bad_step, name=None, which=None):
        super().__init__()
        self.bad_step, self.name, self.which = bad_step, name, which
        self.calls = tf.Variable(0, dtype=tf.int64, trainable=False)

    @property
    def supports_stacking(self):
        return self.which is not None

    def residuals(self, model, points, mode="auto"):
        res = super().residuals(model, points, mode=mode)
        if self.name is not None and getattr(model, "name", None) != self.name:
            return res
        edge = res["L_b"]
        call = self.calls.assign_add(1) - 1
        inf = tf.where(
            call == self.bad_step, tf.constant(np.inf, edge.dtype), tf.zeros([], edge.dtype)
        )
        if self.which is not None:  # points (S, N, 2): hit network `which` only
            hit = tf.one_hot(self.which, model.stack_size, dtype=edge.dtype)[:, None, None]
            inf = tf.where(hit > 0, inf, tf.zeros_like(hit))
        res["L_b"] = edge + inf
        return res


@pytest.fixture
def blows_up():
    """The :class:`BlowsUp` class: ``blows_up(bad_step, name=None, which=None)``."""
    return BlowsUp
