"""Several independent runs trained in one compiled step.

A fair comparison of balancers needs several seeds, and a small PINN leaves most of the machine
idle: every step pays the same fixed costs (launching the compiled function, reading results
back, on a GPU launching kernels) for a few small matrix products. :func:`train_together` puts
``n`` independent runs (their own network, balancer, optimizer state and point sampler) into
*one* ``tf.function``, so those costs are paid once per step for all of them.

The runs do not interact: each one computes the same numbers it would compute alone with
:func:`pinnlib.train` and the same seeds (tested to float rounding), and each gets its own
:class:`~pinnlib.train.History`. Only the clock is shared: ``History.time`` and
``info["steps_per_second"]`` describe the whole group (every run advances one step per group
step). The chapter "ReLoBRaLo" trains its seeds this way; "Derivatives for PINNs" measures the
gain on the book's machine.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from .balancing import Balancer
from .metrics import evaluate
from .pdes.base import PDE
from .train import History, Trainer, _check_int, _InterruptFlag, _progress_bar

__all__ = ["train_together"]


def _distinct(name: str, objects: Sequence) -> None:
    ids = [id(o) for o in objects if o is not None]
    if len(ids) != len(set(ids)):
        raise ValueError(f"each run needs its own {name}: the same object appears twice")


def train_together(
    models: Sequence[keras.Model],
    pde: PDE,
    balancers: Sequence[Balancer | None] | None = None,
    steps: int = 1000,
    seeds: Sequence[int | None] | None = None,
    n_interior: int = 1024,
    n_boundary: int = 1024,
    learning_rate: float = 1e-3,
    eval_every: int | None = None,
    eval_points: int = 256,
    progress: bool = True,
    jit_compile: bool | None = None,
    derivative_mode: str = "auto",
    chunk: int = 100,
) -> list[History]:
    """Train ``len(models)`` independent runs on one PDE, all in one compiled step.

    Args:
        models: one network per run (distinct objects; they may differ, e.g. in their seed).
        pde: the problem all runs solve (same point counts, so one step holds them all).
        balancers: one balancer per run (``None`` entries: :class:`pinnlib.Sum`); runs may use
            different balancers. Default: ``Sum`` for every run.
        steps: steps per run.
        seeds: seed of each run's point sampler (default: ``None`` for each, nondeterministic).
        Other arguments: as in :func:`pinnlib.train`, shared by all runs.

    Returns:
        One :class:`~pinnlib.train.History` per run, in the order of ``models``. Raises
        ``FloatingPointError`` naming the run, step and term when a loss turns NaN or infinite
        (the histories so far are in ``error.histories``).
    """
    models = list(models)
    if not models:
        raise ValueError("train_together needs at least one model")
    n = len(models)
    balancers = [None] * n if balancers is None else list(balancers)
    seeds = [None] * n if seeds is None else list(seeds)
    for name, values in (("balancers", balancers), ("seeds", seeds)):
        if len(values) != n:
            raise ValueError(f"got {n} models but {len(values)} {name}: give one per run")
    _distinct("model", models)
    _distinct("balancer", balancers)
    steps = _check_int("steps", steps, 0)
    eval_every = _check_int("eval_every", eval_every or max(steps // 20, 1), 1)
    trainers = [
        Trainer(
            m,
            pde,
            b,
            n_interior=n_interior,
            n_boundary=n_boundary,
            learning_rate=learning_rate,
            seed=s,
            jit_compile=jit_compile,
            derivative_mode=derivative_mode,
            chunk=chunk,
        )
        for m, b, s in zip(models, balancers, seeds)
    ]
    # One function calling every run's step: one launch, one compilation, n independent graphs.
    group_step = tf.function(
        lambda: [t._one_step() for t in trainers],
        jit_compile=trainers[0].jit_compile,
        autograph=False,
    )

    grid, _ = pde.grid(eval_points)
    exact = pde.exact(grid)
    seconds, first = 0.0, None
    for t in trainers:
        t.history._append_eval(0, *evaluate(t.model, grid, exact), 0.0)
    bar = _progress_bar(steps, 0, progress)
    stop = _InterruptFlag()
    done_total = 0
    try:
        with stop:
            while done_total < steps and not stop.raised:
                next_eval = (done_total // eval_every + 1) * eval_every
                count = min(steps, next_eval, done_total + chunk) - done_total
                outputs = []
                if first is None:  # tracing and compilation
                    t0 = time.perf_counter()
                    outputs.append(group_step())
                    outputs[0][0][0].numpy()
                    first = time.perf_counter() - t0
                    seconds += first
                t0 = time.perf_counter()
                outputs += [group_step() for _ in range(count - len(outputs))]
                per_run = [
                    (
                        np.stack([o[i][0].numpy() for o in outputs]).astype(np.float64),
                        np.stack([o[i][1].numpy() for o in outputs]).astype(np.float64),
                    )
                    for i in range(n)
                ]
                seconds += time.perf_counter() - t0
                _record(trainers, per_run, done_total)
                done_total += count
                if done_total % eval_every == 0 or done_total == steps:
                    for t in trainers:
                        rel, mse = evaluate(t.model, grid, exact)
                        t.history._append_eval(done_total, rel, mse, round(seconds, 4))
                if bar is not None:
                    bar.update(count)
                    worst = max(t.history.rel_l2[-1] for t in trainers)
                    bar.set_postfix(runs=n, worst_rel_l2=f"{worst:.3e}")
    finally:
        if bar is not None:
            bar.close()
    if stop.raised:
        warnings.warn(
            f"interrupted at step {done_total}: returning the histories so far", stacklevel=2
        )
    timed_steps, timed = done_total, seconds
    if first is not None and done_total > 1:
        timed_steps, timed = done_total - 1, seconds - first
    for t in trainers:
        t.history.info.update(
            balancer=repr(t.balancer),
            pde=repr(pde),
            n_interior=t.n_interior,
            n_boundary=t.n_boundary,
            jit_compile=t.jit_compile,
            trained_together=n,
            seconds=round(seconds, 3),
            steps=done_total,
            steps_per_second=round(timed_steps / timed, 2) if timed_steps and timed > 0 else None,
            first_step_seconds=round(first, 3) if first else None,
        )
    return [t.history for t in trainers]


def _record(trainers, per_run, start):
    """Append one chunk to every history; raise if a run hit a non-finite loss."""
    failed = None
    for i, (t, (losses, lambdas)) in enumerate(zip(trainers, per_run)):
        done = int(t.step.numpy()) - start
        if bool(t.halted.numpy()):
            failed = failed or (i, t, done)
            losses, lambdas = losses[:done], lambdas[:done]
        steps = np.arange(start, start + len(losses))
        t.history._append_steps(steps, losses, lambdas, np.sum(losses * lambdas, axis=1))
    if failed is None:
        return
    i, t, done = failed
    bad = per_run[i][0][done]
    term = t.pde.term_names[int(np.argmax(~np.isfinite(bad)))]
    value = bad[t.pde.term_names.index(term)]
    error = FloatingPointError(
        f"run {i}: loss term {term!r} became {value} at step {start + done}; training of all "
        "runs stopped before applying that step (the histories so far are in error.histories)"
    )
    error.histories = [tr.history for tr in trainers]
    raise error
