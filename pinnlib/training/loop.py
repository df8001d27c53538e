"""The training loop: the one Python loop behind :func:`pinnlib.train` and
:func:`pinnlib.train_together`.

Everything that happens every step runs inside the layout's compiled step
(:mod:`pinnlib.training.runs`). This loop only calls it, in *chunks*: a chunk ends at the next
evaluation, checkpoint, ``chunk`` steps or the end, whichever comes first. After each chunk it
reads the chunk's losses and weights back in one go (not one read per step), appends them to
every run's :class:`~pinnlib.training.history.History`, stops with
:class:`~pinnlib.training.step.NonFiniteLossError` if a run met a NaN or infinite loss term,
measures the error against the exact solution when an evaluation is due (and hands it to a
:class:`~pinnlib.training.plateau.ReduceOnPlateau`, if one is given, which may lower the learning
rate or end the run), saves a checkpoint when one is due, and moves the progress bar. An interrupt (Ctrl-C, the notebook's stop button)
ends the loop after the current chunk and returns the histories so far. (Running the loop
itself inside the compiled function, as a ``tf.while_loop``, measured slower under XLA on the
CPU.)

The evaluation is compiled too (a ``tf.function`` built once per grid size, the grid and the
exact solution kept as constants), so with the default schedule (20 evaluations) it costs a
few per cent of the training time.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import tensorflow as tf

from ..validation import check_int
from .checkpoints import Checkpoints
from .history import History
from .plateau import ReduceOnPlateau
from .runs import RunLayout
from .step import NonFiniteLossError

__all__ = ["learning_rate", "train_runs"]


def train_runs(
    layout: RunLayout,
    steps: int,
    eval_every: int | None,
    eval_points: int,
    progress: bool,
    checkpoint_dir: str | Path | None,
    checkpoint_every: int | None,
    chunk: int,
    resume: str = "auto",
    plateau: ReduceOnPlateau | None = None,
) -> list[History]:
    """Train every run of ``layout`` until it has made ``steps`` steps (a total: a resumed or
    repeated call continues); returns the runs' histories. The front ends
    (:meth:`pinnlib.Trainer.run`, :func:`pinnlib.train_together`) hold the defaults.

    Args:
        layout: the runs and their compiled step.
        steps: total number of steps per run.
        eval_every: measure the error every this many steps (default ``steps // 20``).
        eval_points: grid points per axis for the error.
        progress: show a tqdm progress bar.
        checkpoint_dir: save checkpoints and histories here; a fresh layout (at step 0)
            resumes from the newest checkpoint found there (:mod:`~pinnlib.training.checkpoints`).
        checkpoint_every: checkpoint period in steps (default 1000; needs ``checkpoint_dir``).
        chunk: steps between read-backs of the losses (the progress bar's granularity).
        resume: ``"auto"``, ``"must"`` or ``"never"`` (:mod:`~pinnlib.training.checkpoints`).
        plateau: a :class:`~pinnlib.training.plateau.ReduceOnPlateau` fed the error of every
            evaluation at a multiple of ``eval_every`` (one run only); when it says stop, the
            loop saves a checkpoint and returns (``History.info["stopped_by_plateau"]``).
    """
    steps = check_int("steps", steps, 0)
    eval_every = (
        max(steps // 20, 1) if eval_every is None else check_int("eval_every", eval_every, 1)
    )
    chunk = check_int("chunk", chunk, 1)
    eval_points = check_int("eval_points", eval_points, 2)
    if plateau is not None and len(layout.runs) != 1:
        raise ValueError(
            "plateau= trains one run at a time: runs trained together share one loop, and "
            "each would stop at its own step; train them one by one with pinnlib.train"
        )
    saver = Checkpoints(layout, checkpoint_dir, checkpoint_every, resume, plateau)
    evaluation = layout.evaluations.get(eval_points)
    if evaluation is None:
        evaluation = layout.evaluations[eval_points] = _Evaluation(layout, eval_points)
    layout.reset()
    start = now = min(layout.steps())
    seconds_before, compiled_before = layout.seconds, layout.first_step_seconds is not None
    if any(r.history.eval_step.size == 0 or r.history.eval_step[-1] != start for r in layout.runs):
        evaluation.record(start)
    bar = _progress_bar(steps, start, progress)
    stop = _InterruptFlag()
    plateaued = plateau is not None and bool(plateau.stopped.numpy())  # a resumed, stopped run
    try:
        with stop:
            while now < steps and not stop.raised and not plateaued:
                ends = [steps, (now // eval_every + 1) * eval_every, now + chunk, saver.next(now)]
                count = min(ends) - now
                losses, lambdas = _run_chunk(layout, count)
                _record(layout, now, count, losses, lambdas)
                now += count
                if now % eval_every == 0 or now == steps:
                    evaluation.record(now)
                if plateau is not None and now % eval_every == 0:
                    run = layout.runs[0]
                    watched = getattr(run.history, plateau.monitor)[-1]
                    plateaued = plateau.update(watched, run.optimizer)
                    run.history.learning_rate[-1] = learning_rate(run.optimizer)  # the new rate
                saver.save_if_due(now, steps, force=plateaued)
                if bar is not None:
                    bar.update(count)
                    bar.set_postfix(_postfix(layout))
    finally:
        layout.write_back()  # also after an interrupt or a failed run
        if bar is not None:
            bar.close()
    if stop.raised:
        warnings.warn(f"interrupted at step {now}: returning the history so far", stacklevel=3)
    _describe(layout, now, now - start, layout.seconds - seconds_before, compiled_before)
    if plateau is not None:
        for run in layout.runs:
            run.history.info["plateau_reductions"] = int(plateau.reductions.numpy())
            if plateaued:
                run.history.info["stopped_by_plateau"] = now
    return [run.history for run in layout.runs]


def _run_chunk(layout: RunLayout, count: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` steps; their losses and weights as ``(count, runs, terms)`` float64 arrays."""
    outputs = []
    if layout.first_step_seconds is None:  # the first call traces and compiles
        t0 = time.perf_counter()
        outputs.append(layout.train_step())
        outputs[0][0].numpy()
        layout.first_step_seconds = time.perf_counter() - t0
        layout.seconds += layout.first_step_seconds
    t0 = time.perf_counter()
    outputs += [layout.train_step() for _ in range(count - len(outputs))]
    shape = (count, len(layout.runs), -1)
    losses = tf.stack([o[0] for o in outputs]).numpy().reshape(shape).astype(np.float64)
    lambdas = tf.stack([o[1] for o in outputs]).numpy().reshape(shape).astype(np.float64)
    layout.seconds += time.perf_counter() - t0
    return losses, lambdas


def _record(layout: RunLayout, start: int, count: int, losses, lambdas) -> None:
    """Append the applied steps to every history; raise if a run met a non-finite loss."""
    failures = []
    for s, run in enumerate(layout.runs):
        done = int(run.step.numpy()) - start  # a run applies fewer steps only when it halted
        run.history.extend(start, losses[:done, s], lambdas[:done, s])
        if done < count and not np.all(np.isfinite(losses[done, s])):
            failures.append((start + done, s))
    if not failures:
        return
    step, s = min(failures)  # the earliest; stacked runs all halt, only the culprit is named
    row = losses[step - start, s]
    i = int(np.argmax(~np.isfinite(row)))
    names = layout.runs[s].pde.term_names
    run = None if len(layout.runs) == 1 else s
    raise NonFiniteLossError(names[i], row[i], step, run, [r.history for r in layout.runs])


def _describe(layout: RunLayout, now: int, done: int, timed: float, compiled_before: bool):
    """Write what a run needs to be read later into every ``History.info``."""
    first = layout.first_step_seconds
    if not compiled_before and first is not None and done > 1:
        done, timed = done - 1, timed - first  # the rate of the steps after the compiling one
    for run in layout.runs:
        run.history.info.update(
            balancer=repr(run.balancer),
            pde=repr(run.pde),
            n_interior=run.n_interior,
            n_boundary=run.n_boundary,
            jit_compile=layout.jit_compile,
            **layout.info,
            seconds=round(layout.seconds, 3),
            steps=now,
            steps_per_second=round(done / timed, 2) if done and timed > 0 else None,
            first_step_seconds=round(first, 3) if first else None,
        )


def _postfix(layout: RunLayout) -> dict[str, str]:
    """The bar's numbers: the latest total loss, and the error with the step it was measured
    at (errors are measured only at evaluations, so the bar may run ahead of them)."""
    histories = [run.history for run in layout.runs]
    at = int(histories[0].eval_step[-1])
    if len(histories) == 1:
        h = histories[0]
        return {"loss": f"{h.total[-1]:.3e}", "rel_l2": f"{h.rel_l2[-1]:.3e} at step {at}"}
    worst = max(h.rel_l2[-1] for h in histories)
    return {"runs": str(len(histories)), "worst_rel_l2": f"{worst:.3e} at step {at}"}


class _Evaluation:
    """Relative L2 error and MSE of every run's model on one grid, in one compiled call.

    The grid and the exact solution become constants once; the errors are computed in float64
    from the model's output, as :func:`pinnlib.evaluate` does (the compiled forward pass may
    round differently in the last bits of float32).
    """

    batch = 16384  # grid points per forward pass (65536 measured ~8 % slower on the CPU)

    def __init__(self, layout: RunLayout, points: int):
        self.layout = layout
        pde = layout.runs[0].pde
        grid, _ = pde.grid(points)
        exact = np.asarray(pde.exact(grid), np.float64).reshape(-1, 1)
        self.exact, self.norm = tf.constant(exact), float(np.linalg.norm(exact))
        self.grids = {}
        for run in layout.runs:
            if run.dtype not in self.grids:
                self.grids[run.dtype] = [
                    tf.constant(grid[i : i + self.batch], run.dtype)
                    for i in range(0, len(grid), self.batch)
                ]
        self.errors = tf.function(self._errors, autograph=False)

    def _errors(self) -> tf.Tensor:
        rows = []
        for run in self.layout.runs:
            parts = [run.model(g, training=False) for g in self.grids[run.dtype]]
            err = tf.cast(tf.concat(parts, axis=0), tf.float64) - self.exact
            rows.append(tf.stack([tf.norm(err) / self.norm, tf.reduce_mean(tf.square(err))]))
        return tf.stack(rows)

    def record(self, step: int) -> None:
        """Measure every run's model now and append the result to its history."""
        self.layout.write_back()
        errors = self.errors().numpy()
        for run, (rel, mse) in zip(self.layout.runs, errors):
            rate = learning_rate(run.optimizer or getattr(self.layout, "optimizer", None))
            run.history.record_evaluation(step, rel, mse, round(self.layout.seconds, 4), rate)


def learning_rate(optimizer) -> float:
    """The learning rate ``optimizer`` gives its next step (a schedule is evaluated at the
    optimizer's ``iterations``); NaN without an optimizer."""
    if optimizer is None:
        return float("nan")
    return float(tf.convert_to_tensor(optimizer.learning_rate).numpy())


def _progress_bar(total: int, initial: int, enabled: bool):
    """A tqdm bar: a widget in Jupyter/Colab when ipywidgets is there, else a text bar.

    The text bar goes to stdout (stderr shows as an error box in the rendered book) and
    redraws itself with carriage returns, which the book build collapses to its final state
    (``nb_merge_streams``), so a stored notebook shows one clean line per run.
    """
    if not enabled:
        return None
    try:
        import ipywidgets  # noqa: F401
        from tqdm.auto import tqdm

        kwargs = {}
    except ImportError:
        from tqdm.std import tqdm

        kwargs = {"file": sys.stdout, "ncols": 110, "ascii": False}
    return tqdm(total=total, initial=initial, unit="step", mininterval=0.5, **kwargs)


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
