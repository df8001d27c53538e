"""Several independent runs trained in one compiled step.

A fair comparison of balancers needs several seeds, and a small PINN can leave a machine idle:
every step pays the same fixed costs (launching the compiled function, reading results back, on
a GPU launching kernels) for a few small matrix products. :func:`train_together` puts
``n`` independent runs (their own network, balancer, optimizer state and point sampler) into
*one* ``tf.function``, so those costs are paid once per step for all of them. Networks of one
:func:`pinnlib.mlp` configuration go further: they are *stacked*
(:class:`~pinnlib.stacked.StackedMLP`), so that each layer is one batched matrix product for
all runs instead of ``n`` small ones.

The runs do not interact: each one computes the same numbers it would compute alone with
:func:`pinnlib.train` and the same seeds (tested to float rounding), and each gets its own
:class:`~pinnlib.train.History`. Only the clock is shared: ``History.time`` and
``info["steps_per_second"]`` describe the whole group (every run advances one step per group
step). The chapter "Derivatives for PINNs" measures the gain. On the book's 2-core CPU there
was none (a step of this size already keeps the cores busy with arithmetic), so the chapters
train their seeds one after another; the sharing is meant for GPUs, where a small step is
mostly fixed cost (``make bench-gpu`` measures it there).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from types import SimpleNamespace

import keras
import numpy as np
import tensorflow as tf

from .balancing import Balancer
from .metrics import evaluate
from .pdes.base import PDE
from .stacked import StackedMLP, stackable
from .train import History, Trainer, _check_int, _gradients, _InterruptFlag, _progress_bar

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
    stacked: bool | None = None,
) -> list[History]:
    """Train ``len(models)`` independent runs on one PDE, all in one compiled step.

    Args:
        models: one network per run (distinct objects; they may differ, e.g. in their seed).
        pde: the problem all runs solve (same point counts, so one step holds them all).
        balancers: one balancer per run (``None`` entries: :class:`pinnlib.Sum`); runs may use
            different balancers. Default: ``Sum`` for every run.
        steps: steps per run.
        seeds: seed of each run's point sampler (default: ``None`` for each, nondeterministic).
        stacked: evaluate the networks as one :class:`~pinnlib.stacked.StackedMLP` (forward
            mode only). ``None`` stacks when the models share one :func:`pinnlib.mlp`
            configuration and the PDE's residuals are one of pinnlib's own; ``True`` on your own
            PDE promises that its code indexes points as ``p[..., :1]`` and joins them along
            axis ``-2``, so that it accepts points of shape ``(S, N, dims)``.
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
    if stacked is None:
        own = type(pde).residuals.__module__.startswith("pinnlib.")
        stacked = derivative_mode != "tape" and own and stackable(models)
    if stacked:
        if derivative_mode == "tape":
            raise ValueError("stacked networks need forward mode: derivative_mode='tape' given")
        stack = _Stack(trainers, learning_rate)
        group_step = tf.function(
            stack.step_fn, jit_compile=trainers[0].jit_compile, autograph=False
        )
        runs = [
            SimpleNamespace(history=t.history, step=stack.step, halted=stack.halted, pde=pde)
            for t in trainers
        ]
    else:
        # One function calling every run's step: one launch, one compilation, n graphs.
        stack = None
        group_step = tf.function(
            lambda: [t._one_step() for t in trainers],
            jit_compile=trainers[0].jit_compile,
            autograph=False,
        )
        runs = trainers

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
                _record(runs, per_run, done_total)
                done_total += count
                if done_total % eval_every == 0 or done_total == steps:
                    if stack is not None:  # the members' weights, for evaluating them
                        stack.net.write_back()
                    for t in trainers:
                        rel, mse = evaluate(t.model, grid, exact)
                        t.history._append_eval(done_total, rel, mse, round(seconds, 4))
                if bar is not None:
                    bar.update(count)
                    worst = max(t.history.rel_l2[-1] for t in trainers)
                    bar.set_postfix(runs=n, worst_rel_l2=f"{worst:.3e}")
    finally:
        if stack is not None:  # also after an interrupt or a failed run
            stack.net.write_back()
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
            stacked=bool(stacked),
            seconds=round(seconds, 3),
            steps=done_total,
            steps_per_second=round(timed_steps / timed, 2) if timed_steps and timed > 0 else None,
            first_step_seconds=round(first, 3) if first else None,
        )
    return [t.history for t in trainers]


def _record(runs, per_run, start):
    """Append one chunk to every history; raise if a run hit a non-finite loss."""
    failed = None
    for i, (t, (losses, lambdas)) in enumerate(zip(runs, per_run)):
        done = int(t.step.numpy()) - start
        if bool(t.halted.numpy()):
            # Name the run whose loss was not finite (stacked runs all halt together).
            if failed is None and not np.all(np.isfinite(losses[done])):
                failed = (i, t, done)
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
    error.histories = [r.history for r in runs]
    raise error


class _Stack:
    """The compiled step of stacked runs: one batched network, one optimizer, n balancers.

    Every run draws its points from its own generator and updates its own balancer; the loss
    of run ``s`` depends only on slice ``s`` of the stacked weights, so one backward pass of
    ``sum_s sum_i lambda_si L_si`` gives every run its own gradient, and Adam, acting
    elementwise, is ``n`` independent Adams. A non-finite loss in any run skips the step for all.
    """

    def __init__(self, trainers, learning_rate):
        self.trainers = trainers
        self.net = StackedMLP([t.model for t in trainers])
        self.variables = self.net.trainable_variables
        self.optimizer = keras.optimizers.Adam(float(learning_rate))
        self.optimizer.build(self.variables)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="stack_step")
        self.halted = tf.Variable(False, trainable=False, name="stack_halted")

    def step_fn(self):
        trainers, variables = self.trainers, self.variables
        first = trainers[0]
        pde = first.pde
        samples = [pde.sample(t.n_interior, t.n_boundary, t.generator, t.dtype) for t in trainers]
        points = {k: tf.stack([p[k] for p in samples]) for k in samples[0]}
        needs = any(t.balancer.needs_gradients for t in trainers)
        with tf.GradientTape(persistent=needs) as tape:
            terms = pde.losses(self.net, points, mode=first.derivative_mode)  # each (S,)
            losses = tf.stack(terms, axis=1)  # (S, terms)
        finite = tf.reduce_all(tf.math.is_finite(losses))

        def apply():
            if needs:
                per_term = [_gradients(tape, term, variables) for term in terms]
                lambdas = []
                for s, t in enumerate(trainers):
                    own = [[g[s] for g in grads] for grads in per_term]
                    w = t.balancer.update(losses[s], own if t.balancer.needs_gradients else None)
                    lambdas.append(tf.cast(w, losses.dtype))
                lambdas = tf.stack(lambdas)
                grads = []
                for j, v in enumerate(variables):
                    shape = [-1] + [1] * (v.shape.rank - 1)
                    grads.append(
                        tf.add_n(
                            [
                                tf.reshape(lambdas[:, i], shape) * g[j]
                                for i, g in enumerate(per_term)
                            ]
                        )
                    )
            else:
                lambdas = tf.stack(
                    [
                        tf.cast(t.balancer.update(losses[s]), losses.dtype)
                        for s, t in enumerate(trainers)
                    ]
                )
                grads = tape.gradient(losses, variables, output_gradients=lambdas)
            self.optimizer.apply(grads, variables)
            self.step.assign_add(1)
            return lambdas

        def skip():
            return tf.fill(tf.shape(losses), tf.constant(float("nan"), losses.dtype))

        proceed = tf.logical_and(finite, tf.logical_not(self.halted))
        lambdas = tf.cond(proceed, apply, skip)
        self.halted.assign(tf.logical_or(self.halted, tf.logical_not(finite)))
        return [(losses[s], lambdas[s]) for s in range(len(trainers))]
