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

The optimisers of the papers (issue #23) on this path: a learning-rate schedule is Keras' own,
``model.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.ExponentialDecay(
1e-3, 1000, 0.9)))`` (Wang et al.), evaluated at the optimizer's step, which Keras saving keeps,
so a restored model continues the schedule exactly; the plateau rule of Bischof & Kraus is
``keras.callbacks.ReduceLROnPlateau`` on a ``fit`` metric (``fit`` runs no evaluation against
the exact solution, so :class:`pinnlib.ReduceOnPlateau` has nothing to read here); L-BFGS after
``fit`` is ``pinnlib.lbfgs(model.network, model.pde, model.balancer, ...)``.

Saving works the Keras way, with everything that decides the rest of the run: the network, the
optimizer (after ``compile``), the balancer's state (step counter, weights, remembered losses,
the lookback generator of :class:`~pinnlib.balancing.ReLoBRaLo`), the point sampler and the
step counter. So ``model.save_weights("run.weights.h5")`` / ``model.load_weights(...)``,
``model.save("run.keras")`` / ``keras.models.load_model("run.keras")``,
``keras.callbacks.ModelCheckpoint`` and ``keras.callbacks.BackupAndRestore`` give back a model
that continues exactly as the uninterrupted one would. ``load_model`` needs no
``custom_objects`` for pinnlib's own classes (they are registered with Keras under the package
name ``"pinnlib"``); a PDE or balancer of your own must be registered with
``@keras.saving.register_keras_serializable()`` or passed as ``custom_objects={"MyPDE":
MyPDE}``, and must have a ``get_config`` (the base classes read the constructor's arguments
from attributes of the same names). Weights files load into a model built with the same
network, PDE and balancer type; another balancer type is refused with a ValueError naming both
sets of state.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from .. import balancing, pdes
from ..balancing import Balancer
from ..nn import model_dtype
from ..pdes.base import PDE
from ..validation import check_int
from .runs import check_run, refuse_built_optimizer, residual_terms
from .step import NonFiniteLossError, balanced_step

__all__ = ["PINNModel"]

#: pinnlib's PDEs and balancers, registered with Keras so that ``keras.models.load_model``
#: rebuilds them from a ``.keras`` file without ``custom_objects``. (Registered here rather
#: than where they are defined: ``balancing.py`` imports only TensorFlow and NumPy.)
_REGISTERED = (
    balancing.Sum,
    balancing.Fixed,
    balancing.SoftAdapt,
    balancing.ReLoBRaLo,
    balancing.LRAnnealing,
    balancing.GradNorm,
    balancing.GlobalGradNorm,
    balancing.HomoscedasticUncertainty,
    balancing.ConFIG,
    balancing.NTKWeights,
    pdes.Poisson1D,
    pdes.Helmholtz,
    pdes.Kirchhoff,
    pdes.Burgers,
)
for _cls in _REGISTERED:
    if keras.saving.get_registered_object(f"pinnlib>{_cls.__name__}") is None:
        keras.saving.register_keras_serializable(package="pinnlib")(_cls)


class _SavedVariables(keras.layers.Layer):
    """Plain ``tf.Variable``\\ s that Keras saving writes and reads by name.

    Keras 3 saves the variables of layers, models and optimizers, not those of a ``tf.Module``
    such as a balancer or of a ``tf.random.Generator``. This layer (no weights of its own, no
    computation) holds such variables and stores them under their names in ``.weights.h5`` and
    ``.keras`` files; loading checks names, shapes and dtypes and refuses a mismatch.
    """

    def __init__(self, variables: dict[str, tf.Variable], what: str, **kwargs):
        super().__init__(trainable=False, **kwargs)
        self._names, self._saved, self._what = tuple(variables), tuple(variables.values()), what
        self.built = True

    def save_own_variables(self, store):
        for name, variable in zip(self._names, self._saved):
            store[name] = variable.numpy()

    def load_own_variables(self, store):
        saved = sorted(store.keys())
        if saved != sorted(self._names):
            found = f"holds {saved}" if saved else "holds none"
            raise ValueError(
                f"the file's state of the {self._what} does not fit this model: the file {found}, "
                f"this model has {sorted(self._names)} (another balancer type?)"
            )
        for name, variable in zip(self._names, self._saved):
            value = np.asarray(store[name])
            want = (tuple(variable.shape), variable.dtype.as_numpy_dtype)
            if (value.shape, value.dtype) != want:
                raise ValueError(
                    f"the file's {self._what} state {name!r} has shape {value.shape} and dtype "
                    f"{value.dtype}, this model's has {want[0]} and {np.dtype(want[1])} "
                    "(another number of loss terms or dtype?)"
                )
        for name, variable in zip(self._names, self._saved):
            variable.assign(np.asarray(store[name]))


@keras.saving.register_keras_serializable(package="pinnlib")
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
        balancer_state, sampler_state: the layers through which Keras saves the balancer's
            state and the sampler's (with ``applied_steps``); no weights of their own.
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
        self.seed = None if seed is None else check_int("seed", seed)
        self.sampler = (
            tf.random.Generator.from_seed(self.seed)
            if seed is not None
            else tf.random.Generator.from_non_deterministic_state()
        )
        self.applied_steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="applied")
        self.halted = tf.Variable(False, trainable=False, name="halted")
        # The losses of the first step that was not finite, for the error message.
        self.failed_losses = tf.Variable(tf.zeros([pde.num_terms], tf.float64), trainable=False)
        # Keras saving walks a model's attributes and finds these; set past Keras' tracking so
        # that they stay out of model.layers and summary() (they compute nothing).
        states = {
            "balancer_state": _SavedVariables(
                balancer.state_variables(),
                f"balancer ({type(balancer).__name__})",
                name="balancer_state",
            ),
            "sampler_state": _SavedVariables(
                {"sampler.state": self.sampler.state, "applied_steps": self.applied_steps},
                "sampler",
                name="sampler_state",
            ),
        }
        for name, layer in states.items():
            object.__setattr__(self, name, layer)
        # Built from the start: the network is (check_run made sure) and nothing else is created
        # later, so Keras can save the model before or after fit.
        self.built = True

    def build(self, input_shape=None):
        """Nothing to build: the network is built and the state exists from the constructor."""

    def get_config(self) -> dict:
        """What ``keras.models.load_model`` needs to rebuild the model (its state is in the
        file's weights)."""
        serialize = keras.saving.serialize_keras_object
        return {
            "name": self.name,
            "trainable": self.trainable,
            "network": serialize(self.network),
            "pde": serialize(self.pde),
            "balancer": serialize(self.balancer),
            "n_interior": self.n_interior,
            "n_boundary": self.n_boundary,
            "seed": self.seed,
            "derivative_mode": self.derivative_mode,
        }

    @classmethod
    def from_config(cls, config: dict, custom_objects=None) -> PINNModel:
        """A new model from :meth:`get_config`'s dictionary (network, PDE and balancer are
        rebuilt by Keras' deserialization, so classes of your own must be registered or given
        in ``custom_objects``)."""
        config = dict(config)
        for key in ("network", "pde", "balancer"):
            config[key] = keras.saving.deserialize_keras_object(
                config[key], custom_objects=custom_objects
            )
        return cls(**config)

    def compile(self, *args, **kwargs):
        """``keras.Model.compile``; the optimizer's state is created at once, not at the first
        step, so that a model saved or loaded before ``fit`` includes it."""
        super().compile(*args, **kwargs)
        if not self.optimizer.built:
            self.optimizer.build(self._trained_variables())
        elif self.balancer.trainable_variables:
            refuse_built_optimizer(self.balancer)

    def _trained_variables(self) -> list:
        """What the optimizer is built for: the network's trainable variables and, after them,
        the balancer's (``HomoscedasticUncertainty``'s log-variances, which the step adds)."""
        return list(self.network.trainable_variables) + list(self.balancer.trainable_variables)

    def compile_from_config(self, config: dict) -> None:
        """How ``keras.models.load_model`` compiles the model again (Keras asks a model that
        overrides ``compile`` to say so)."""
        self.compile(**keras.saving.deserialize_keras_object(config))

    def call(self, inputs, training=False):
        return self.network(inputs, training=training)

    def train_step(self, data):
        variables = self.network.trainable_variables
        if not self.optimizer.built:
            self.optimizer.build(self._trained_variables())
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
            names=self.pde.term_names,
            residuals=residual_terms(
                self.pde, self.network, points, self.balancer, self.derivative_mode
            ),
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
        """``keras.Model.fit``; without ``x`` the (ignored) input is a dummy dataset.

        Not under a ``tf.distribute`` strategy: the guarded step cannot branch on a replica
        (see :mod:`pinnlib.training.distributed`), so a model built in a strategy's scope is
        refused with a ``NotImplementedError``; ``pinnlib.train(..., strategy=...)`` trains
        data-parallel instead.
        """
        strategy = getattr(self, "distribute_strategy", None)
        if tf.distribute.has_strategy() or (
            strategy is not None and strategy.num_replicas_in_sync > 1
        ):
            raise NotImplementedError(
                "PINNModel.fit does not train under a tf.distribute strategy (this model was "
                "built in a strategy's scope); use pinnlib.train(model, pde, balancer, "
                "strategy=..., jit_compile=False), which does (appendix 'Scaling out')"
            )
        for name, low in (("epochs", 0), ("initial_epoch", 0), ("steps_per_epoch", 1)):
            if kwargs.get(name) is not None:
                kwargs[name] = check_int(name, kwargs[name], low)
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
