"""ReLoBRaLo the Keras way: ``model.compile()`` and ``model.fit()`` (chapter "ReLoBRaLo in Keras").

The article promises that ReLoBRaLo drops into a Keras workflow. :class:`PINNModel` wraps a
network, a PDE and a balancer in a ``keras.Model`` whose ``train_step`` samples fresh points
and takes the same guarded, balanced step as :func:`pinnlib.train`
(:func:`~pinnlib.training.step.balanced_step`); the terms and weights show up as metrics::

    model = pinnlib.PINNModel(pinnlib.mlp(2, 4, 50), pinnlib.Helmholtz(), pinnlib.ReLoBRaLo(2))
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(epochs=10, steps_per_epoch=100)

A loss term that turns NaN or infinite is not applied, and ``fit`` stops with a
:class:`~pinnlib.training.step.NonFiniteLossError` naming the step and the term (under XLA as
well, where TensorFlow's own assertions compile to nothing). The compiled loop of
:func:`pinnlib.train` is faster; this path is for people who live in Keras (callbacks, ``fit``
logs). TensorFlow backend only.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from ..balancing import Balancer
from ..nn import model_dtype
from ..pdes.base import PDE
from .runs import check_run
from .step import NonFiniteLossError, balanced_step

__all__ = ["PINNModel"]


class PINNModel(keras.Model):
    """A Keras model that trains ``network`` on ``pde`` with ``balancer`` inside ``fit``.

    Args:
        network: the Keras network (e.g. :func:`pinnlib.mlp`).
        pde: the problem.
        balancer: loss balancer (default :class:`pinnlib.Sum`).
        n_interior, n_boundary: collocation points drawn every step.
        seed: seed of the point sampler.
        derivative_mode: see :func:`pinnlib.derivatives.derivatives`.

    Attributes:
        applied_steps: training steps applied so far (a ``tf.Variable``).
    """

    def __init__(
        self,
        network: keras.Model,
        pde: PDE,
        balancer: Balancer | None = None,
        n_interior: int = 1024,
        n_boundary: int = 1024,
        seed: int | None = None,
        derivative_mode: str = "auto",
        **kwargs,
    ):
        super().__init__(**kwargs)
        balancer = check_run(network, pde, balancer, n_interior, n_boundary, derivative_mode)
        self.network, self.pde, self.balancer = network, pde, balancer
        self.n_interior, self.n_boundary = int(n_interior), int(n_boundary)
        self.derivative_mode = derivative_mode
        self.sampler = (
            tf.random.Generator.from_seed(seed)
            if seed is not None
            else tf.random.Generator.from_non_deterministic_state()
        )
        self.applied_steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="applied")
        self.halted = tf.Variable(False, trainable=False, name="halted")
        # The losses of the first step that was not finite, for the error message.
        self.failed_losses = tf.Variable(tf.zeros([pde.num_terms], tf.float64), trainable=False)

    def call(self, inputs, training=False):
        return self.network(inputs, training=training)

    def train_step(self, data):
        variables = self.network.trainable_variables
        if not self.optimizer.built:
            self.optimizer.build(variables)
        dtype = tf.as_dtype(model_dtype(self.network))
        points = self.pde.sample(self.n_interior, self.n_boundary, self.sampler, dtype)
        was_halted = tf.identity(self.halted)
        losses, lambdas = balanced_step(
            lambda: self.pde.losses(self.network, points, mode=self.derivative_mode),
            variables,
            [self.balancer],
            self.optimizer,
            self.halted,
            self.applied_steps,
        )
        first_failure = tf.logical_and(self.halted, tf.logical_not(was_halted))
        wide = tf.cast(losses, tf.float64)
        self.failed_losses.assign(tf.where(first_failure, wide, self.failed_losses))
        logs = {"loss": tf.reduce_sum(lambdas * losses)}
        for i, name in enumerate(self.pde.term_names):
            logs[name] = losses[i]
            logs[f"lambda_{name}"] = lambdas[i]
        return logs

    def fit(self, x=None, *args, **kwargs):
        """``keras.Model.fit``; without ``x`` the (ignored) input is a dummy dataset."""
        if x is None:
            if kwargs.get("steps_per_epoch") is None:
                raise ValueError("pass steps_per_epoch: a PINN draws its own points every step")
            x = tf.data.Dataset.from_tensors(tf.zeros([1])).repeat()
            kwargs.setdefault("shuffle", False)
        self.halted.assign(False)
        kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), _StopOnNonFinite()]
        return super().fit(x, *args, **kwargs)


class _StopOnNonFinite(keras.callbacks.Callback):
    """Raises :class:`NonFiniteLossError` after the batch in which the model halted."""

    def on_train_batch_end(self, batch, logs=None):
        model = self.model
        if bool(model.halted.numpy()):
            losses = model.failed_losses.numpy()
            i = int(np.argmax(~np.isfinite(losses)))
            step = int(model.applied_steps.numpy())
            raise NonFiniteLossError(model.pde.term_names[i], losses[i], step)
