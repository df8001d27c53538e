"""Training: one compiled step, a thin Python loop, and the history a chapter plots.

Everything that happens every step runs inside one ``tf.function`` (optionally XLA-compiled):
fresh collocation points are drawn from a ``tf.random.Generator``, the loss terms are
evaluated (forward-mode derivatives for :func:`pinnlib.mlp` networks), the balancer updates
its weights, and the optimizer takes its step. The Python loop only calls the compiled step;
every ``chunk`` steps it reads back the losses and weights, updates the progress bar and, every
``eval_every`` steps, measures the error against the exact solution. (Running the loop itself
inside the compiled function, as a ``tf.while_loop``, measured slower under XLA on the CPU.) Sampling points in Python instead costs more
than a factor of two (chapter "Derivatives for PINNs" measures it).

Reliability: a loss term that turns NaN or infinite stops the run at that step, *before* the
optimizer or the balancer sees it, with a ``FloatingPointError`` naming the step and the term
(the history so far is attached as ``error.history``). With ``checkpoint_dir`` the model,
optimizer, balancer, sampling generator and step counter are saved every ``checkpoint_every``
steps and a later call resumes from the newest checkpoint. Interrupting the kernel stops after
the current chunk and returns the history so far.
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from .balancing import Balancer, Sum
from .budget import budget_name
from .metrics import evaluate
from .nn import model_dtype
from .pdes.base import PDE

__all__ = ["History", "Trainer", "train"]


def _gradients(tape, term, variables):
    """Gradient of one loss term; zeros for variables it does not depend on (e.g. the output
    bias for a term made of derivatives only)."""
    grads = tape.gradient(term, variables)
    return [tf.zeros_like(v) if g is None else g for g, v in zip(grads, variables)]


@dataclass
class History:
    """What a run records. Arrays are NumPy; one row per training step or per evaluation.

    Attributes:
        term_names: names of the loss terms, in column order.
        step: index of each recorded training step.
        losses: ``(steps, terms)`` loss terms, as evaluated at that step (before its update).
        lambdas: ``(steps, terms)`` weights the balancer used at that step.
        total: weighted total loss per step.
        eval_step: steps at which the error was measured (0 = before training).
        rel_l2: relative L2 error against the exact/reference solution on the grid.
        mse: mean squared error against the exact/reference solution on the grid.
        time: training wall time (seconds, evaluation excluded) at each evaluation.
        info: facts about the run: balancer, sizes, ``seconds`` (training wall time, the first
            step's tracing and compilation included), ``first_step_seconds`` (that first step)
            and ``steps_per_second`` (the steps after it).
    """

    term_names: tuple[str, ...]
    step: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    losses: np.ndarray | None = None
    lambdas: np.ndarray | None = None
    total: np.ndarray = field(default_factory=lambda: np.zeros(0))
    eval_step: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    rel_l2: np.ndarray = field(default_factory=lambda: np.zeros(0))
    mse: np.ndarray = field(default_factory=lambda: np.zeros(0))
    time: np.ndarray = field(default_factory=lambda: np.zeros(0))
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        n = len(self.term_names)
        if self.losses is None:
            self.losses = np.zeros((0, n))
        if self.lambdas is None:
            self.lambdas = np.zeros((0, n))

    def _append_steps(self, steps, losses, lambdas, total):
        self.step = np.concatenate([self.step, steps])
        self.losses = np.concatenate([self.losses, losses])
        self.lambdas = np.concatenate([self.lambdas, lambdas])
        self.total = np.concatenate([self.total, total])

    def _append_eval(self, step, rel, mse, seconds):
        self.eval_step = np.append(self.eval_step, step)
        self.rel_l2 = np.append(self.rel_l2, rel)
        self.mse = np.append(self.mse, mse)
        self.time = np.append(self.time, seconds)

    @property
    def final_error(self) -> float:
        """The last measured relative L2 error (NaN if none was measured)."""
        return float(self.rel_l2[-1]) if self.rel_l2.size else float("nan")

    def term(self, name: str) -> np.ndarray:
        """The per-step values of one loss term."""
        return self.losses[:, self.term_names.index(name)]

    def save(self, path) -> None:
        """Write the history to an ``.npz`` file."""
        arrays = {k: getattr(self, k) for k in _ARRAYS}
        np.savez(path, term_names=np.array(self.term_names), info=json.dumps(self.info), **arrays)

    @classmethod
    def load(cls, path) -> History:
        with np.load(path) as data:
            h = cls(tuple(str(s) for s in data["term_names"]), info=json.loads(str(data["info"])))
            for k in _ARRAYS:
                setattr(h, k, data[k])
        return h

    def truncate(self, steps: int) -> History:
        """The history of the first ``steps`` steps (used when resuming)."""
        keep, keep_eval = self.step < steps, self.eval_step <= steps
        h = History(self.term_names, info=dict(self.info))
        for k in ("step", "losses", "lambdas", "total"):
            setattr(h, k, getattr(self, k)[keep])
        for k in ("eval_step", "rel_l2", "mse", "time"):
            setattr(h, k, getattr(self, k)[keep_eval])
        return h

    def __repr__(self) -> str:
        return (
            f"History({len(self.step)} steps, terms={self.term_names}, "
            f"final rel L2={self.final_error:.3g})"
        )


_ARRAYS = ("step", "losses", "lambdas", "total", "eval_step", "rel_l2", "mse", "time")


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


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
        learning_rate: Adam's learning rate, unless ``optimizer`` is given.
        optimizer: a Keras 3 optimizer.
        seed: seed of the point-sampling generator (``None``: nondeterministic).
        jit_compile: XLA-compile the step (faster on CPU and GPU; ``False`` for debugging);
            ``None`` compiles at the full budget and not at the smoke budget.
        derivative_mode: ``"auto"``, ``"forward"`` or ``"tape"`` (:mod:`pinnlib.derivatives`).
        chunk: steps between read-backs of the history (the progress bar's granularity).
    """

    def __init__(
        self,
        model: keras.Model,
        pde: PDE,
        balancer: Balancer | None = None,
        n_interior: int = 1024,
        n_boundary: int = 1024,
        learning_rate: float = 1e-3,
        optimizer: keras.optimizers.Optimizer | None = None,
        seed: int | None = None,
        jit_compile: bool | None = None,
        derivative_mode: str = "auto",
        chunk: int = 100,
    ):
        if not isinstance(pde, PDE):
            raise TypeError(f"pde must be a pinnlib PDE, got {type(pde).__name__}")
        pde.check_sizes(n_interior, n_boundary)
        pde.check_model(model)
        balancer = Sum(pde.num_terms) if balancer is None else balancer
        if not isinstance(balancer, Balancer):
            raise TypeError(f"balancer must be a pinnlib Balancer, got {type(balancer).__name__}")
        if balancer.num_terms != pde.num_terms:
            raise ValueError(
                f"the balancer has {balancer.num_terms} terms but {type(pde).__name__} has "
                f"{pde.num_terms}: {pde.term_names}"
            )
        if optimizer is None:
            lr = float(learning_rate)
            if not math.isfinite(lr) or lr <= 0:
                raise ValueError(f"learning_rate must be a finite number > 0, got {learning_rate}")
            optimizer = keras.optimizers.Adam(lr)
        self.model, self.pde, self.balancer, self.optimizer = model, pde, balancer, optimizer
        self.n_interior, self.n_boundary = int(n_interior), int(n_boundary)
        self.chunk = _check_int("chunk", chunk, 1)
        self.derivative_mode = derivative_mode
        self.dtype = tf.as_dtype(model_dtype(model))
        self.generator = (
            tf.random.Generator.from_seed(seed)
            if seed is not None
            else tf.random.Generator.from_non_deterministic_state()
        )
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="train_step")
        self.optimizer.build(model.trainable_variables)
        # XLA compiles slowly but runs fast: worth it except in the seconds-long smoke runs.
        self.jit_compile = budget_name() == "full" if jit_compile is None else bool(jit_compile)
        self.halted = tf.Variable(False, trainable=False, name="halted")
        # No AutoGraph: the step has no Python control flow on tensors (tf.cond is explicit), and
        # converting the derivative code took most of the first trace's time.
        self._step_fn = tf.function(self._one_step, jit_compile=self.jit_compile, autograph=False)
        self.history = History(pde.term_names)

    # -- the compiled part -----------------------------------------------------------------
    def _one_step(self):
        pde, balancer, variables = self.pde, self.balancer, self.model.trainable_variables
        points = pde.sample(self.n_interior, self.n_boundary, self.generator, self.dtype)
        with tf.GradientTape(persistent=balancer.needs_gradients) as tape:
            terms = pde.losses(self.model, points, mode=self.derivative_mode)
            losses = tf.stack(terms)
        finite = tf.reduce_all(tf.math.is_finite(losses))

        def apply():
            if balancer.needs_gradients:
                term_grads = [_gradients(tape, term, variables) for term in terms]
                lambdas = tf.cast(balancer.update(losses, term_grads), losses.dtype)
                grads = [
                    tf.add_n([lambdas[i] * tg[j] for i, tg in enumerate(term_grads)])
                    for j in range(len(variables))
                ]
            else:
                lambdas = tf.cast(balancer.update(losses), losses.dtype)
                # One backward pass of sum_i lambda_i L_i, lambda held constant.
                grads = tape.gradient(losses, variables, output_gradients=lambdas)
            self.optimizer.apply(grads, variables)
            self.step.assign_add(1)
            return lambdas

        def skip():
            return tf.fill([pde.num_terms], tf.constant(float("nan"), losses.dtype))

        proceed = tf.logical_and(finite, tf.logical_not(self.halted))
        lambdas = tf.cond(proceed, apply, skip)
        # Once a term is not finite, every later call is a no-op until the loop sees the flag.
        self.halted.assign(tf.logical_or(self.halted, tf.logical_not(finite)))
        return losses, lambdas

    # -- the Python loop -------------------------------------------------------------------
    def run(
        self,
        steps: int,
        eval_every: int | None = None,
        eval_points: int = 256,
        progress: bool = True,
        checkpoint_dir: str | Path | None = None,
        checkpoint_every: int | None = None,
    ) -> History:
        """Train until ``self.step == steps`` (a total, so a resumed run continues).

        Returns the :class:`History` (also kept as ``self.history``).
        """
        steps = _check_int("steps", steps, 0)
        eval_every = _check_int("eval_every", eval_every or max(steps // 20, 1), 1)
        grid, _ = self.pde.grid(eval_points)
        exact = self.pde.exact(grid)
        manager, checkpoint_every = self._checkpoint_manager(checkpoint_dir, checkpoint_every)
        history = self.history
        self.halted.assign(False)
        start = int(self.step.numpy())
        seconds_at_start = self._seconds
        compiled_before = self._first_step_seconds is not None
        if history.eval_step.size == 0 or history.eval_step[-1] != start:
            history._append_eval(start, *evaluate(self.model, grid, exact), self._elapsed())
        bar = _progress_bar(steps, start, progress)
        stop = _InterruptFlag()
        try:
            with stop:
                while int(self.step.numpy()) < steps and not stop.raised:
                    current = int(self.step.numpy())
                    next_eval = (current // eval_every + 1) * eval_every
                    limit = [steps, next_eval, current + self.chunk]
                    if manager is not None:
                        limit.append((current // checkpoint_every + 1) * checkpoint_every)
                    count = min(limit) - current
                    outputs = []
                    if self._first_step_seconds is None:  # tracing and XLA compilation
                        t0 = time.perf_counter()
                        outputs.append(self._step_fn())
                        outputs[0][0].numpy()
                        self._first_step_seconds = compile_now = time.perf_counter() - t0
                        self._seconds += compile_now
                    t0 = time.perf_counter()
                    outputs += [self._step_fn() for _ in range(count - len(outputs))]
                    losses = np.stack([o[0].numpy() for o in outputs]).astype(np.float64)
                    lambdas = np.stack([o[1].numpy() for o in outputs]).astype(np.float64)
                    self._seconds += time.perf_counter() - t0
                    done = int(self.step.numpy()) - current
                    if bool(self.halted.numpy()):
                        self._fail(current, done + 1, losses[: done + 1], lambdas[: done + 1], bar)
                    history._append_steps(
                        np.arange(current, current + done),
                        losses,
                        lambdas,
                        np.sum(losses * lambdas, axis=1),
                    )
                    now = int(self.step.numpy())
                    if now % eval_every == 0 or now == steps:
                        rel, mse = evaluate(self.model, grid, exact)
                        history._append_eval(now, rel, mse, self._elapsed())
                    if manager is not None and (now % checkpoint_every == 0 or now == steps):
                        self._save(manager, checkpoint_dir)
                    if bar is not None:
                        bar.update(done)
                        bar.set_postfix(
                            loss=f"{history.total[-1]:.3e}", rel_l2=f"{history.rel_l2[-1]:.3e}"
                        )
        finally:
            if bar is not None:
                bar.close()
        if stop.raised:
            warnings.warn(
                f"interrupted at step {int(self.step.numpy())}: returning the history so far",
                stacklevel=2,
            )
        done_steps = int(self.step.numpy()) - start
        timed = self._seconds - seconds_at_start
        if not compiled_before and self._first_step_seconds is not None and done_steps > 1:
            # The first step traces and compiles; the rate is that of the steps after it.
            done_steps, timed = done_steps - 1, timed - self._first_step_seconds
        history.info.update(
            balancer=repr(self.balancer),
            pde=repr(self.pde),
            n_interior=self.n_interior,
            n_boundary=self.n_boundary,
            jit_compile=self.jit_compile,
            seconds=round(self._seconds, 3),
            steps=int(self.step.numpy()),
            steps_per_second=round(done_steps / timed, 2) if done_steps and timed > 0 else None,
            first_step_seconds=(
                round(self._first_step_seconds, 3) if self._first_step_seconds else None
            ),
        )
        return history

    _seconds = 0.0
    _first_step_seconds = None

    def _elapsed(self) -> float:
        return round(self._seconds, 4)

    def _fail(self, current, done, losses, lambdas, bar):
        bad_row = losses[done - 1]
        term = self.pde.term_names[int(np.argmax(~np.isfinite(bad_row)))]
        value = bad_row[self.pde.term_names.index(term)]
        step = current + done - 1
        self.history._append_steps(
            np.arange(current, step),
            losses[:-1],
            lambdas[:-1],
            np.sum(losses[:-1] * lambdas[:-1], axis=1),
        )
        if bar is not None:
            bar.close()
        error = FloatingPointError(
            f"loss term {term!r} became {value} at step {step}; training stopped before "
            "applying that step (the history so far is in error.history)"
        )
        error.history = self.history
        raise error

    # -- checkpoints -----------------------------------------------------------------------
    def checkpoint(self) -> tf.train.Checkpoint:
        """A ``tf.train.Checkpoint`` of everything that determines the rest of the run."""
        return tf.train.Checkpoint(
            model=self.model,
            optimizer=self.optimizer,
            balancer=self.balancer,
            generator=self.generator,
            step=self.step,
        )

    def _checkpoint_manager(self, directory, every):
        """``(manager, period)``; restores the newest checkpoint into a fresh trainer."""
        if directory is None:
            if every is not None:
                raise ValueError("checkpoint_every needs a checkpoint_dir")
            return None, None
        every = _check_int("checkpoint_every", 1000 if every is None else every, 1)
        ckpt = self.checkpoint()
        manager = tf.train.CheckpointManager(ckpt, str(directory), max_to_keep=2)
        if manager.latest_checkpoint and int(self.step.numpy()) == 0:
            ckpt.restore(manager.latest_checkpoint).assert_existing_objects_matched()
            saved = Path(directory) / "history.npz"
            if saved.exists():
                self.history = History.load(saved).truncate(int(self.step.numpy()))
                self._seconds = float(self.history.time[-1]) if self.history.time.size else 0.0
        return manager, every

    def _save(self, manager, directory):
        manager.save(checkpoint_number=int(self.step.numpy()))
        self.history.save(Path(directory) / "history.npz")


def _progress_bar(total, initial, enabled):
    if not enabled:
        return None
    try:  # a widget bar in Jupyter/Colab when ipywidgets is there, else a text bar
        import ipywidgets  # noqa: F401
        from tqdm.auto import tqdm
    except ImportError:
        from tqdm.std import tqdm

    return tqdm(total=total, initial=initial, unit="step", mininterval=0.5, dynamic_ncols=True)


class _InterruptFlag:
    """Turns Ctrl-C / a notebook interrupt into a flag checked between chunks of steps."""

    raised = False

    def __enter__(self):
        self._previous = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.raised:  # a second interrupt stops at once
            raise KeyboardInterrupt
        self.raised = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


def train(
    model: keras.Model,
    pde: PDE,
    balancer: Balancer | None = None,
    steps: int = 1000,
    n_interior: int = 1024,
    n_boundary: int = 1024,
    learning_rate: float = 1e-3,
    optimizer: keras.optimizers.Optimizer | None = None,
    seed: int | None = None,
    eval_every: int | None = None,
    eval_points: int = 256,
    progress: bool = True,
    jit_compile: bool | None = None,
    derivative_mode: str = "auto",
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int | None = None,
    chunk: int = 100,
) -> History:
    """Train ``model`` on ``pde`` for ``steps`` Adam steps with points resampled every step.

    Args:
        model: network from :func:`pinnlib.mlp` (or any Keras model with one output).
        pde: the problem, e.g. :class:`pinnlib.Helmholtz`.
        balancer: loss balancer (default: the unweighted :class:`pinnlib.Sum`).
        steps: total number of steps (a resumed run continues up to this number).
        n_interior, n_boundary: collocation points per step.
        learning_rate: Adam learning rate (ignored when ``optimizer`` is given).
        seed: seed of the sampling generator; with seeded model and balancer the run repeats
            (to float rounding; XLA and non-XLA steps draw different point streams).
        eval_every: measure the error on the grid every this many steps (default steps/20).
        eval_points: grid points per axis for the error.
        progress: show a tqdm progress bar.
        jit_compile: XLA-compile the training step (``None``: only at the full budget).
        derivative_mode: ``"auto"``, ``"forward"`` or ``"tape"``.
        checkpoint_dir: save a checkpoint (and ``history.npz``) here and resume from it.
        checkpoint_every: checkpoint period in steps (default 1000).
        chunk: steps between read-backs of the history.

    Returns:
        The :class:`History`. Raises ``FloatingPointError`` (with ``.history``) when a loss
        term turns NaN or infinite.
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
    )
    return trainer.run(
        steps,
        eval_every=eval_every,
        eval_points=eval_points,
        progress=progress,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=checkpoint_every,
    )
