"""One run: :func:`train` and the :class:`Trainer` behind it (chapter "A PINN from scratch").

``train(model, pde, balancer, steps=...)`` builds a :class:`Trainer` (a
:class:`~pinnlib.training.runs.Run` in a one-run
:class:`~pinnlib.training.runs.SeparateRuns` layout) and runs the loop of
:mod:`pinnlib.training.loop`. Keep a ``Trainer`` to train in several calls (the step is
compiled once) or to call the compiled step yourself (:meth:`Trainer.train_step`).

Reliability: a loss term that turns NaN or infinite stops the run at that step, *before* the
optimizer or the balancer sees it, with a :class:`~pinnlib.training.step.NonFiniteLossError`
(a ``FloatingPointError``) naming the step and the term; the history so far is attached as
``error.history``. With ``checkpoint_dir`` the model, optimizer, balancer, sampling generator
and step counter are saved every ``checkpoint_every`` steps and a later call resumes from the
newest checkpoint, continuing exactly as an uninterrupted run would; it prints ``resumed from
step N``, refuses a folder saved by another run (PDE, balancer type, network shape, ...) with a
ValueError naming both, and ``resume="must"``/``"never"`` insist on resuming or on a fresh start
(:mod:`~pinnlib.training.checkpoints`). Interrupting the kernel stops after the current chunk
and returns the history so far.

With ``strategy`` (a ``tf.distribute.MirroredStrategy`` or ``MultiWorkerMirroredStrategy``) the
run is trained data-parallel on the strategy's devices
(:class:`~pinnlib.training.distributed.MirroredRuns`, appendix "Scaling out").
"""

from __future__ import annotations

from pathlib import Path

import keras
import tensorflow as tf

from ..balancing import Balancer
from ..pdes.base import PDE
from ..validation import check_int, check_learning_rate
from .distributed import one_run_layout
from .history import History
from .loop import train_runs
from .plateau import ReduceOnPlateau, check_plateau
from .runs import Run

__all__ = ["Trainer", "train"]


class Trainer:
    """Holds the compiled step for one model, PDE, balancer and optimizer.

    :func:`train` is the usual entry point; use a ``Trainer`` to call :meth:`run` several
    times (the compiled function is built once).

    Args:
        model: a Keras model mapping points to one output.
        pde: the problem (:mod:`pinnlib.pdes`).
        balancer: a :class:`pinnlib.balancing.Balancer` with ``pde.num_terms`` terms
            (default :class:`~pinnlib.balancing.Sum`).
        n_interior, n_boundary: collocation points drawn afresh every step.
        learning_rate: Adam's learning rate, unless ``optimizer`` is given: a number, or a
            ``keras.optimizers.schedules.LearningRateSchedule`` evaluated at the optimizer's
            step (Wang et al.'s 1e-3 · 0.9^(step/1000) is
            ``keras.optimizers.schedules.ExponentialDecay(1e-3, 1000, 0.9)``); the step is in
            the checkpoint, so a resumed run continues the schedule exactly.
        optimizer: a Keras 3 optimizer.
        plateau: a :class:`~pinnlib.training.plateau.ReduceOnPlateau` that lowers the learning
            rate (a number, not a schedule) when the evaluated error stops improving, and may
            end the run (Bischof & Kraus); its state is checkpointed.
        seed: seed of the point-sampling generator (``None``: nondeterministic).
        jit_compile: XLA-compile the step: ``True``, ``False`` or ``"auto"`` (default: ``True``
            on one device, ``False`` under a ``strategy``, which XLA cannot compile). XLA is
            faster on CPU and GPU, but compiling takes seconds: notebooks pass
            ``pinnlib.budget(True, False)`` so that their smoke tests skip it. ``False`` for
            debugging.
        derivative_mode: ``"auto"``, ``"forward"`` or ``"tape"`` (:mod:`pinnlib.derivatives`).
        chunk: steps between read-backs of the history (the progress bar's granularity).
        strategy: a ``tf.distribute`` strategy to train on several devices (``None``: one).
            Create the model, and the balancer and optimizer if given, inside
            ``strategy.scope()``; ``n_interior`` and ``n_boundary`` are then the points of the
            whole step, split evenly over the replicas; ``jit_compile`` must be ``False`` or
            ``"auto"`` (:mod:`pinnlib.training.distributed` says why).

    Attributes:
        model, pde, balancer, optimizer: as given (``balancer`` and ``optimizer`` filled in).
        generator: the point sampler (a ``tf.random.Generator``).
        step: the number of steps applied so far (a ``tf.Variable``).
        history: the :class:`~pinnlib.training.history.History` of the run so far.
    """

    def __init__(
        self,
        model: keras.Model,
        pde: PDE,
        balancer: Balancer | None = None,
        n_interior: int = 1024,
        n_boundary: int = 1024,
        learning_rate: float | keras.optimizers.schedules.LearningRateSchedule = 1e-3,
        optimizer: keras.optimizers.Optimizer | None = None,
        seed: int | None = None,
        jit_compile: bool | str = "auto",
        derivative_mode: str = "auto",
        chunk: int = 100,
        strategy: tf.distribute.Strategy | None = None,
        plateau: ReduceOnPlateau | None = None,
    ):
        self.chunk = check_int("chunk", chunk, 1)
        self.plateau = check_plateau(plateau)

        def make_run() -> Run:  # under a strategy, called inside its scope
            opt = optimizer
            if opt is None:
                opt = keras.optimizers.Adam(check_learning_rate("learning_rate", learning_rate))
            return Run(model, pde, balancer, opt, seed, n_interior, n_boundary, derivative_mode)

        given = dict(model=model, optimizer=optimizer, balancer=balancer)
        self._layout = one_run_layout(make_run, jit_compile, strategy, given)
        run = self._run = self._layout.runs[0]
        self.strategy, optimizer = strategy, run.optimizer
        self.model, self.pde, self.balancer, self.optimizer = model, pde, run.balancer, optimizer
        self.generator, self.step, self.dtype = run.generator, run.step, run.dtype
        self.n_interior, self.n_boundary = run.n_interior, run.n_boundary
        self.derivative_mode, self.jit_compile = derivative_mode, self._layout.jit_compile
        if plateau is not None:
            plateau.check_optimizer(optimizer)
        self._lbfgs_done = False

    @property
    def history(self) -> History:
        return self._run.history

    def train_step(self) -> tuple[tf.Tensor, tf.Tensor]:
        """Run exactly one compiled training step; return its ``(losses, lambdas)`` tensors.

        Nothing is read back (call ``.numpy()`` when you need the numbers), so timing a loop of
        these calls measures the step itself; the history is not extended. A step whose loss
        terms are not all finite is not applied: its ``lambdas`` are NaN and the trainer stays
        halted (later steps are skipped too) until the next :meth:`run`.
        """
        return self._layout.train_step()

    def run(
        self,
        steps: int,
        eval_every: int | None = None,
        eval_points: int = 256,
        progress: bool = True,
        checkpoint_dir: str | Path | None = None,
        checkpoint_every: int | None = None,
        resume: str = "auto",
    ) -> History:
        """Train until ``self.step == steps`` (a total, so a resumed run continues).

        Arguments as in :func:`train`. Returns the :class:`History` (also ``self.history``).
        A trainer that has trained already continues from its own state, not from a checkpoint.
        """
        if self._lbfgs_done:
            raise ValueError(
                "this Trainer has run L-BFGS (Trainer.lbfgs), whose iterations continue the "
                "history's step numbers but not the Adam step counter, so Adam steps after it "
                "would number the history twice: build a new Trainer to train on"
            )
        schedule = (steps, eval_every, eval_points, progress, checkpoint_dir, checkpoint_every)
        (history,) = train_runs(self._layout, *schedule, self.chunk, resume, self.plateau)
        return history

    def lbfgs(
        self,
        iterations: int,
        n_interior: int | None = None,
        n_boundary: int | None = None,
        eval_every: int | None = None,
        eval_points: int = 256,
        tolerance: float = 0.0,
        history_size: int = 50,
    ) -> History:
        """Fine-tune with L-BFGS after the Adam steps (:func:`pinnlib.lbfgs`).

        The points are drawn once from this trainer's sampler (``n_interior`` and
        ``n_boundary`` default to the trainer's), the balancer's latest weights are frozen, and
        the iterations continue this trainer's history (``history.phases`` marks where L-BFGS
        starts). Not under a ``tf.distribute`` strategy. After it, :meth:`run` is refused
        (build a new Trainer to train on). Returns the history.
        """
        from .lbfgs import lbfgs_layout

        if self.strategy is not None:
            raise ValueError(
                "Trainer.lbfgs does not run under a tf.distribute strategy: SciPy's L-BFGS "
                "works on one host vector of all weights, and the loss would be computed on "
                "one device only; fine-tune with pinnlib.lbfgs on a model outside the strategy"
            )
        history = lbfgs_layout(
            self._layout,
            iterations,
            self.n_interior if n_interior is None else n_interior,
            self.n_boundary if n_boundary is None else n_boundary,
            eval_every,
            eval_points,
            tolerance,
            history_size,
        )
        self._lbfgs_done = True
        return history

    def checkpoint(self) -> tf.train.Checkpoint:
        """A ``tf.train.Checkpoint`` of everything that determines the rest of the run (the
        plateau's state too, when there is one)."""
        checkpoint = self._layout.checkpoint()
        if self.plateau is not None:
            checkpoint.plateau = self.plateau
        return checkpoint


def train(
    model: keras.Model,
    pde: PDE,
    balancer: Balancer | None = None,
    steps: int = 1000,
    n_interior: int = 1024,
    n_boundary: int = 1024,
    learning_rate: float | keras.optimizers.schedules.LearningRateSchedule = 1e-3,
    optimizer: keras.optimizers.Optimizer | None = None,
    seed: int | None = None,
    eval_every: int | None = None,
    eval_points: int = 256,
    progress: bool = True,
    jit_compile: bool | str = "auto",
    derivative_mode: str = "auto",
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int | None = None,
    chunk: int = 100,
    resume: str = "auto",
    strategy: tf.distribute.Strategy | None = None,
    plateau: ReduceOnPlateau | None = None,
) -> History:
    """Train ``model`` on ``pde`` for ``steps`` Adam steps with points resampled every step.

    Args:
        model: network from :func:`pinnlib.mlp` (or any Keras model with one output).
        pde: the problem, e.g. :class:`pinnlib.Helmholtz`.
        balancer: loss balancer (default: the unweighted :class:`pinnlib.Sum`).
        steps: total number of steps (a resumed run continues up to this number).
        n_interior, n_boundary: collocation points per step.
        learning_rate: Adam learning rate (ignored when ``optimizer`` is given): a number or a
            ``keras.optimizers.schedules.LearningRateSchedule``, e.g. Wang et al.'s
            ``ExponentialDecay(1e-3, 1000, 0.9)`` (see :class:`Trainer`).
        optimizer: a Keras 3 optimizer instead of Adam.
        seed: seed of the sampling generator; with seeded model and balancer the run repeats
            (to float rounding; XLA and non-XLA steps draw different point streams).
        eval_every: measure the error on the grid every this many steps (default steps/20).
        eval_points: grid points per axis for the error.
        progress: show a tqdm progress bar.
        jit_compile: XLA-compile the training step (default ``"auto"``: on one device, not under
            a strategy; see :class:`Trainer`).
        derivative_mode: ``"auto"``, ``"forward"`` or ``"tape"``.
        checkpoint_dir: save a checkpoint (and ``history.npz``, ``runs.json``) here and
            resume from it; a resume prints ``resumed from step N``.
        checkpoint_every: checkpoint period in steps (default 1000).
        chunk: steps between read-backs of the history.
        resume: with ``checkpoint_dir``: ``"auto"`` resumes if the folder holds a checkpoint,
            ``"must"`` raises a ValueError if it holds none (a mistyped path), ``"never"``
            raises one if it does (pinnlib deletes nothing). A checkpoint of another run (PDE,
            balancer type, number of terms, network shape, optimizer) is always refused.
        strategy: train data-parallel on the devices of a ``tf.distribute`` strategy
            (see :class:`Trainer`; appendix "Scaling out").
        plateau: a :class:`~pinnlib.training.plateau.ReduceOnPlateau`: lower the learning
            rate when the evaluated error stops improving, as Bischof & Kraus trained.

    Returns:
        The :class:`History`. Raises :class:`~pinnlib.training.step.NonFiniteLossError` (a
        ``FloatingPointError``, with ``.history``) when a loss term turns NaN or infinite.
    """
    trainer = Trainer(
        model,
        pde,
        balancer,
        n_interior=n_interior,
        n_boundary=n_boundary,
        learning_rate=learning_rate,
        optimizer=optimizer,
        seed=seed,
        jit_compile=jit_compile,
        derivative_mode=derivative_mode,
        chunk=chunk,
        strategy=strategy,
        plateau=plateau,
    )
    schedule = (steps, eval_every, eval_points, progress, checkpoint_dir, checkpoint_every)
    return trainer.run(*schedule, resume=resume)
