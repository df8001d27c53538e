"""Runs and their layouts: what the training loop trains, and the compiled step that does it.

A :class:`Run` is the state of one training run: its network, problem, balancer, optimizer,
point sampler (a seeded ``tf.random.Generator``), step counter and
:class:`~pinnlib.training.history.History`. A *layout* puts one or more runs into one compiled
step (a ``tf.function``, XLA-compiled by default):

* :class:`SeparateRuns`: every run keeps its own network, optimizer and halted flag, and the
  step calls :func:`~pinnlib.training.step.balanced_step` once per run. One run is what
  :class:`pinnlib.Trainer` trains; several are the *grouped* runs of
  :func:`pinnlib.train_together`.
* :class:`StackedRuns`: same-size :func:`pinnlib.mlp` networks become one
  :class:`~pinnlib.stacked.StackedMLP`, so every layer is one batched product for all runs, and
  one :func:`~pinnlib.training.step.balanced_step` serves them all (one optimizer acting
  elementwise, which is the same as one optimizer per run).

Each layout gives the loop the same four things: ``train_step()`` (losses and weights of every
run), ``runs``, ``checkpoint()`` (a ``tf.train.Checkpoint`` of everything that decides the rest
of the training) and ``write_back()`` (the trained weights into the runs' models). Sampling
happens inside the compiled step: drawing points in Python instead costs more than a factor
of two (the chapter "Derivatives for PINNs" measures it).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from ..balancing import Balancer, Sum
from ..derivatives import MODES
from ..nn import model_dtype
from ..pdes.base import PDE
from ..stacked import StackedMLP
from ..validation import check_bool, check_choice, check_instance, check_int
from .history import History
from .step import balanced_step

__all__ = [
    "Run",
    "RunLayout",
    "SeparateRuns",
    "StackedRuns",
    "check_jit_compile",
    "check_run",
    "refuse_built_optimizer",
]


def check_jit_compile(jit_compile) -> bool:
    """``jit_compile`` if it is ``True`` or ``False``; pinnlib never picks it for you."""
    if jit_compile is None:
        raise TypeError(
            "jit_compile must be True or False, got None (pinnlib no longer decides from "
            "PINNLIB_BUDGET; a notebook passes jit_compile=pinnlib.budget(True, False))"
        )
    return check_bool("jit_compile", jit_compile)


def check_run(model, pde, balancer, n_interior, n_boundary, derivative_mode) -> Balancer:
    """Validate the pieces of a run; returns the balancer (:class:`pinnlib.Sum` for ``None``)."""
    check_instance("pde", pde, PDE, "a pinnlib PDE")
    pde.check_sizes(n_interior, n_boundary)
    check_instance("model", model, keras.Model, "a Keras model")
    if not model.built:
        # A subclassed model (or one whose layers are built lazily) gets its weights on its
        # first call: call it once on the PDE's input shape, outside the compiled step, so
        # that the optimizer knows every weight before training starts.
        d = pde.dims
        model(tf.zeros([1, d], model_dtype(model)))
        if not model.trainable_variables:
            raise ValueError(
                f"the model {model.name!r} has no weights to train even after a first call on "
                f"points of shape (1, {d}): give it trainable layers, e.g. pinnlib.mlp({d}, "
                "layers=4, width=50)"
            )
    pde.check_model(model)
    balancer = Sum(pde.num_terms) if balancer is None else balancer
    check_instance("balancer", balancer, Balancer, "a pinnlib Balancer")
    if balancer.num_terms != pde.num_terms:
        raise ValueError(
            f"the balancer has {balancer.num_terms} terms but {type(pde).__name__} has "
            f"{pde.num_terms}: {pde.term_names}"
        )
    check_choice("derivative_mode", derivative_mode, MODES)
    return balancer


def refuse_built_optimizer(balancer: Balancer) -> None:
    """A ValueError: an optimizer built already cannot take a balancer's trainable variables."""
    raise ValueError(
        f"{type(balancer).__name__} has trainable variables that the run's optimizer trains "
        "with the model, but the optimizer given was built already (for other variables); "
        "pass an optimizer that is not built yet"
    )


class Run:
    """The state of one training run.

    Args:
        model: a Keras model mapping points to one output.
        pde: the problem (:mod:`pinnlib.pdes`).
        balancer: a :class:`pinnlib.balancing.Balancer` (default :class:`pinnlib.Sum`).
        optimizer: a Keras 3 optimizer, built here for the model's variables; ``None`` for a
            run whose network is trained as part of a stack.
        seed: seed of the point sampler (``None``: nondeterministic).
        n_interior, n_boundary: collocation points drawn afresh every step.
        derivative_mode: ``"auto"``, ``"forward"`` or ``"tape"`` (:mod:`pinnlib.derivatives`).
    """

    def __init__(
        self,
        model: keras.Model,
        pde: PDE,
        balancer: Balancer | None = None,
        optimizer: keras.optimizers.Optimizer | None = None,
        seed: int | None = None,
        n_interior: int = 1024,
        n_boundary: int = 1024,
        derivative_mode: str = "auto",
    ):
        balancer = check_run(model, pde, balancer, n_interior, n_boundary, derivative_mode)
        if optimizer is not None:
            check_instance("optimizer", optimizer, keras.optimizers.Optimizer, "a Keras optimizer")
            own = list(balancer.trainable_variables)  # trained with the model (see step.py)
            if not optimizer.built:  # its state must exist before the compiled step runs
                optimizer.build(model.trainable_variables + own)
            elif own:
                refuse_built_optimizer(balancer)
        self.model, self.pde, self.balancer, self.optimizer = model, pde, balancer, optimizer
        self.n_interior, self.n_boundary = int(n_interior), int(n_boundary)
        self.derivative_mode = derivative_mode
        self.dtype = tf.as_dtype(model_dtype(model))
        self.generator = (
            tf.random.Generator.from_non_deterministic_state()
            if seed is None
            else tf.random.Generator.from_seed(check_int("seed", seed))
        )
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="train_step")
        self.history = History(pde.term_names)

    def sample(self) -> dict[str, tf.Tensor]:
        """This step's collocation points (inside the compiled step)."""
        return self.pde.sample(self.n_interior, self.n_boundary, self.generator, self.dtype)

    def checkpoint(self) -> tf.train.Checkpoint:
        """Model, optimizer, balancer, sampler and step counter."""
        return tf.train.Checkpoint(
            model=self.model,
            optimizer=self.optimizer,
            balancer=self.balancer,
            generator=self.generator,
            step=self.step,
        )


class RunLayout:
    """Runs laid out in one compiled step (base of :class:`SeparateRuns`, :class:`StackedRuns`).

    Attributes:
        runs: the :class:`Run` objects, in order.
        jit_compile: whether the step is XLA-compiled.
        train_step: the compiled step; returns ``(losses, lambdas)``, shape ``(terms,)`` for a
            single run and ``(runs, terms)`` for several (``lambdas`` NaN for a skipped step).
        seconds: training wall time so far (the loop adds to it; evaluation excluded).
        first_step_seconds: the first call's time (tracing and compilation), once measured.
        evaluations: the loop's compiled evaluations, one per grid size.
    """

    #: Extra facts for every run's ``History.info``.
    info: dict = {}

    def __init__(self, runs: list[Run], jit_compile: bool, halted: int):
        self.runs, self.jit_compile = list(runs), check_jit_compile(jit_compile)
        self.halted = [tf.Variable(False, trainable=False, name="halted") for _ in range(halted)]
        # No AutoGraph: the step has no Python control flow on tensors (tf.cond is explicit),
        # and converting the derivative code took most of the first trace's time.
        self.train_step = tf.function(self.step_body, jit_compile=self.jit_compile, autograph=False)
        self.seconds, self.first_step_seconds = 0.0, None
        self.evaluations: dict = {}

    def step_body(self) -> tuple[tf.Tensor, tf.Tensor]:
        """One step of every run (the uncompiled body of :attr:`train_step`)."""
        raise NotImplementedError

    def reset(self) -> None:
        """Clear the halted flags (a new call of the loop starts afresh)."""
        for flag in self.halted:
            flag.assign(False)

    def steps(self) -> list[int]:
        """Every run's applied steps."""
        return [int(run.step.numpy()) for run in self.runs]

    def write_back(self) -> None:
        """Make the runs' models hold the trained weights (a no-op unless stacked)."""

    def checkpoint(self) -> tf.train.Checkpoint:
        raise NotImplementedError


def kernel_points(points: dict[str, tf.Tensor], count: int) -> dict[str, tf.Tensor]:
    """At most ``count`` evenly spaced rows of every point set (the points on which
    :class:`~pinnlib.NTKWeights` takes its per-point Jacobians). The step's points are a fresh
    uniform sample, so any fixed rows are a uniform subsample; evenly spaced rows of a set made
    of several edges one after another take points from every edge."""
    out = {}
    for name, p in points.items():
        rows = p.shape[-2]
        if rows <= count:
            out[name] = p
        else:
            out[name] = tf.gather(p, [k * rows // count for k in range(count)], axis=-2)
    return out


def residual_terms(pde: PDE, model, points: dict[str, tf.Tensor], balancer: Balancer, mode: str):
    """For a balancer with ``needs_residuals``: a function giving each term's per-point
    residuals on :func:`kernel_points` of this step's points (``None`` for other balancers)."""
    if not balancer.needs_residuals:
        return None

    def residuals():
        res = pde.residuals(model, kernel_points(points, balancer.points), mode=mode)
        return [res[name] for name in pde.term_names]

    return residuals


def _one_run(run: Run, halted: tf.Variable) -> tuple[tf.Tensor, tf.Tensor]:
    points = run.sample()
    return balanced_step(
        lambda: run.pde.losses(run.model, points, mode=run.derivative_mode),
        run.model.trainable_variables,
        [run.balancer],
        run.optimizer,
        halted,
        run.step,
        names=run.pde.term_names,
        residuals=residual_terms(run.pde, run.model, points, run.balancer, run.derivative_mode),
    )


class SeparateRuns(RunLayout):
    """One or more runs with their own networks and optimizers, in one compiled step.

    One function calling every run's step: one launch and one compilation for all of them.
    A run whose loss turns non-finite halts alone; the loop stops all at the end of the chunk.
    """

    def __init__(self, runs: list[Run], jit_compile: bool):
        super().__init__(runs, jit_compile, halted=len(runs))
        if len(self.runs) > 1:
            self.info = {"trained_together": len(self.runs), "stacked": False}

    def step_body(self):
        outputs = [_one_run(run, flag) for run, flag in zip(self.runs, self.halted)]
        if len(outputs) == 1:
            return outputs[0]
        if len({o[0].dtype for o in outputs}) > 1:  # float32 and float64 networks together
            outputs = [[tf.cast(t, tf.float64) for t in o] for o in outputs]
        return tf.stack([o[0] for o in outputs]), tf.stack([o[1] for o in outputs])

    def checkpoint(self):
        if len(self.runs) == 1:  # the layout of pinnlib 0.2's Trainer checkpoints
            return self.runs[0].checkpoint()
        return tf.train.Checkpoint(**{f"run_{i}": r.checkpoint() for i, r in enumerate(self.runs)})


class StackedRuns(RunLayout):
    """Runs whose same-configuration networks are trained as one :class:`StackedMLP`.

    Every run draws its points from its own generator and updates its own balancer; the loss of
    run ``s`` depends only on slice ``s`` of the stacked weights, so one backward pass of
    ``sum_s sum_i lambda_si L_si`` gives every run its own gradient, and an optimizer acting
    elementwise (see :meth:`accepts`) is ``S`` independent optimizers. The runs share one step
    counter, and a non-finite loss in any of them skips the step for all.

    Args:
        runs: runs built with ``optimizer=None`` whose models :func:`pinnlib.stacked.stackable`
            accepts, on one PDE that accepts points of shape ``(S, N, dims)``.
        optimizer: the optimizer of the stack (see :meth:`accepts`).
        jit_compile: XLA-compile the step.
    """

    #: Optimizer classes whose update of each weight reads only that weight's own gradient and
    #: state, so that one of them on the stack equals one per run.
    ELEMENTWISE = (
        keras.optimizers.SGD,
        keras.optimizers.Adam,
        keras.optimizers.AdamW,
        keras.optimizers.Adamax,
        keras.optimizers.Nadam,
        keras.optimizers.RMSprop,
        keras.optimizers.Adagrad,
        keras.optimizers.Lion,
    )

    def __init__(self, runs: list[Run], optimizer: keras.optimizers.Optimizer, jit_compile: bool):
        if not self.accepts(optimizer):
            raise ValueError(
                f"stacked runs need an optimizer that acts elementwise (one of "
                f"{[c.__name__ for c in self.ELEMENTWISE]}, without clipnorm/global_clipnorm); "
                f"got {type(optimizer).__name__}: pass stacked=False"
            )
        super().__init__(runs, jit_compile, halted=1)
        self.net = StackedMLP([run.model for run in self.runs])
        self.variables = self.net.trainable_variables
        self.optimizer = optimizer
        # Balancers trained by gradient (one set of variables per run) share the stack's
        # optimizer, which acts elementwise: the same as one optimizer per run.
        own = [v for run in self.runs for v in run.balancer.trainable_variables]
        if own and self.optimizer.built:
            refuse_built_optimizer(self.runs[0].balancer)
        self.optimizer.build(self.variables + own)
        shared = tf.Variable(0, dtype=tf.int64, trainable=False, name="stack_step")
        for run in self.runs:  # every run advances one step per stacked step
            run.step = shared
        self.info = {"trained_together": len(self.runs), "stacked": True}

    @classmethod
    def accepts(cls, optimizer) -> bool:
        """Whether ``optimizer`` acts elementwise (no clipping by a norm, which would mix runs)."""
        return (
            type(optimizer) in cls.ELEMENTWISE
            and optimizer.clipnorm is None
            and optimizer.global_clipnorm is None
        )

    def step_body(self):
        first = self.runs[0]
        samples = [run.sample() for run in self.runs]
        points = {k: tf.stack([p[k] for p in samples]) for k in samples[0]}
        return balanced_step(
            lambda: first.pde.losses(self.net, points, mode=first.derivative_mode),  # each (S,)
            self.variables,
            [run.balancer for run in self.runs],
            self.optimizer,
            self.halted[0],
            first.step,
            names=first.pde.term_names,
        )

    def write_back(self) -> None:
        self.net.write_back()

    def checkpoint(self):
        per_run = {
            f"run_{i}": tf.train.Checkpoint(balancer=r.balancer, generator=r.generator)
            for i, r in enumerate(self.runs)
        }
        return tf.train.Checkpoint(
            weights=self.variables, optimizer=self.optimizer, step=self.runs[0].step, **per_run
        )
