"""ReLoBRaLo the Keras way: ``model.compile()`` and ``model.fit()`` (chapter "ReLoBRaLo in Keras").

The article promises that ReLoBRaLo drops into a Keras workflow. :class:`PINNModel` wraps a
network, a PDE and a balancer in a ``keras.Model`` whose ``train_step`` samples fresh points,
balances the loss terms and applies the optimizer; the terms and weights show up as metrics::

    model = pinnlib.PINNModel(pinnlib.mlp(2, 4, 50), pinnlib.Helmholtz(), pinnlib.ReLoBRaLo(2))
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(epochs=10, steps_per_epoch=100)

The compiled loop of :func:`pinnlib.train` is faster; this path is for people who live in Keras
(callbacks, ``fit`` logs). TensorFlow backend only.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from .balancing import Balancer, Sum
from .nn import model_dtype
from .pdes.base import PDE
from .train import _gradients

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
        pde.check_sizes(n_interior, n_boundary)
        pde.check_model(network)
        balancer = Sum(pde.num_terms) if balancer is None else balancer
        if balancer.num_terms != pde.num_terms:
            raise ValueError(
                f"the balancer has {balancer.num_terms} terms but the PDE has {pde.num_terms}"
            )
        self.network, self.pde, self.balancer = network, pde, balancer
        self.n_interior, self.n_boundary = n_interior, n_boundary
        self.derivative_mode = derivative_mode
        self.sampler = (
            tf.random.Generator.from_seed(seed)
            if seed is not None
            else tf.random.Generator.from_non_deterministic_state()
        )

    def call(self, inputs, training=False):
        return self.network(inputs, training=training)

    def train_step(self, data):
        pde, variables = self.pde, self.network.trainable_variables
        dtype = tf.as_dtype(model_dtype(self.network))
        points = pde.sample(self.n_interior, self.n_boundary, self.sampler, dtype)
        with tf.GradientTape(persistent=self.balancer.needs_gradients) as tape:
            terms = pde.losses(self.network, points, mode=self.derivative_mode)
            losses = tf.stack(terms)
        tf.debugging.assert_all_finite(losses, "a PINN loss term became NaN or infinite")
        if self.balancer.needs_gradients:
            term_grads = [_gradients(tape, term, variables) for term in terms]
            lambdas = tf.cast(self.balancer.update(losses, term_grads), dtype)
            grads = [
                tf.add_n([lambdas[i] * tg[j] for i, tg in enumerate(term_grads)])
                for j in range(len(variables))
            ]
        else:
            lambdas = tf.cast(self.balancer.update(losses), dtype)
            grads = tape.gradient(losses, variables, output_gradients=lambdas)
        self.optimizer.apply(grads, variables)
        logs = {"loss": tf.reduce_sum(lambdas * losses)}
        for i, name in enumerate(pde.term_names):
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
        return super().fit(x, *args, **kwargs)
