"""Several independent runs trained in one compiled step: :func:`train_together`.

A fair comparison of balancers needs several seeds, and a small PINN can leave a machine idle:
every step pays the same fixed costs (launching the compiled function, reading results back, on
a GPU launching kernels) for a few small matrix products. :func:`train_together` puts
``n`` independent runs (their own network, balancer, optimizer state and point sampler) into
*one* ``tf.function``, so those costs are paid once per step for all of them. Networks of one
:func:`pinnlib.mlp` configuration go further: they are *stacked*
(:class:`~pinnlib.training.runs.StackedRuns`), so that each layer is one batched matrix product
for all runs instead of ``n`` small ones.

The runs do not interact: each one computes the same numbers it would compute alone with
:func:`pinnlib.train` and the same seeds (tested to float rounding), and each gets its own
:class:`~pinnlib.training.history.History`. Only the clock is shared: ``History.time`` and
``info["steps_per_second"]`` describe the whole group (every run advances one step per group
step). Checkpoints and resuming work as for :func:`pinnlib.train`. The chapter "Derivatives for
PINNs" measures the gain. On the book's 2-core CPU there was none (a step of this size already
keeps the cores busy with arithmetic), so the chapters train their seeds one after another; the
sharing is meant for GPUs, where a small step is mostly fixed cost (``make bench-gpu``
measures it there).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

import keras

from ..balancing import Balancer
from ..pdes.base import PDE
from ..stacked import stackable
from ..validation import check_instance, check_learning_rate
from .history import History
from .loop import train_runs
from .runs import Run, SeparateRuns, StackedRuns, check_jit_compile
from .trainer import train

__all__ = ["train_together"]

#: The keyword arguments of :func:`pinnlib.train` that train_together passes to every run.
_SHARED = (
    "n_interior",
    "n_boundary",
    "learning_rate",
    "eval_every",
    "eval_points",
    "progress",
    "jit_compile",
    "derivative_mode",
    "checkpoint_dir",
    "checkpoint_every",
    "chunk",
    "resume",
)


def _distinct(name: str, objects: Sequence) -> None:
    ids = [id(o) for o in objects if o is not None]
    if len(ids) != len(set(ids)):
        raise ValueError(f"each run needs its own {name}: the same object appears twice")


def _optimizer_factory(optimizer, learning_rate) -> Callable[[], keras.optimizers.Optimizer]:
    if optimizer is None:
        learning_rate = check_learning_rate("learning_rate", learning_rate)
        return lambda: keras.optimizers.Adam(learning_rate)
    if isinstance(optimizer, keras.optimizers.Optimizer) or not callable(optimizer):
        raise TypeError(
            "optimizer must be a function returning a fresh Keras optimizer (one per run), "
            f"e.g. lambda: keras.optimizers.SGD(1e-2), got {type(optimizer).__name__}"
        )
    return optimizer


def _shared_options(given: dict) -> dict:
    """The options all runs share: those given, the rest with :func:`pinnlib.train`'s defaults."""
    defaults = inspect.signature(train).parameters
    unknown = sorted(set(given) - set(_SHARED))
    if unknown:
        raise TypeError(
            f"train_together() got unexpected keyword arguments {unknown}; the options shared "
            f"by all runs are {_SHARED}"
        )
    return {name: given.get(name, defaults[name].default) for name in _SHARED}


def _fresh(factory, made: list) -> keras.optimizers.Optimizer:
    optimizer = check_instance(
        "optimizer()", factory(), keras.optimizers.Optimizer, "a Keras optimizer"
    )
    _distinct("optimizer (the factory returned one twice)", [*made, optimizer])
    made.append(optimizer)
    return optimizer


def train_together(
    models: Sequence[keras.Model],
    pde: PDE,
    balancers: Sequence[Balancer | None] | None = None,
    steps: int = 1000,
    seeds: Sequence[int | None] | None = None,
    *,
    optimizer: Callable[[], keras.optimizers.Optimizer] | None = None,
    stacked: bool | None = None,
    plateau=None,
    **options,
) -> list[History]:
    """Train ``len(models)`` independent runs on one PDE, all in one compiled step.

    Args:
        models: one network per run (distinct objects; they may differ, e.g. in their seed).
        pde: the problem all runs solve (same point counts, so one step holds them all).
        balancers: one balancer per run (``None`` entries: :class:`pinnlib.Sum`); runs may use
            different balancers. Default: ``Sum`` for every run.
        steps: steps per run (a total: a resumed call continues up to this number).
        seeds: seed of each run's point sampler (default: ``None`` for each, nondeterministic).
        optimizer: a function returning a fresh Keras optimizer, e.g.
            ``lambda: keras.optimizers.SGD(1e-2, momentum=0.9)``; each run gets its own. Stacked
            runs share one, which is the same as one per run for the optimizers that act
            elementwise (:attr:`~pinnlib.training.runs.StackedRuns.ELEMENTWISE`, no norm
            clipping); for any other, the runs are grouped instead of stacked.
        stacked: evaluate the networks as one :class:`~pinnlib.stacked.StackedMLP` (forward
            mode only). ``None`` stacks when the models share one :func:`pinnlib.mlp`
            configuration, the PDE declares ``supports_stacking`` (pinnlib's own do) and the
            optimizer acts elementwise; ``True`` on your own PDE promises that its code indexes
            points as ``p[..., :1]`` and joins them along axis ``-2``, so that it accepts
            points of shape ``(S, N, dims)``.
        plateau: refused (a ValueError): a :class:`~pinnlib.training.plateau.ReduceOnPlateau`
            stops its run at a step of its own, and runs trained together share one loop
            (stacked ones one optimizer too); train each with :func:`pinnlib.train`.
        options: the keyword arguments of :func:`pinnlib.train` that all runs share, with its
            defaults: ``n_interior``, ``n_boundary``, ``learning_rate`` (a number or a Keras
            ``LearningRateSchedule``, shared by the runs; each optimizer evaluates it at its
            own step), ``eval_every``,
            ``eval_points``, ``progress``, ``jit_compile``, ``derivative_mode``,
            ``checkpoint_dir``, ``checkpoint_every``, ``chunk`` and ``resume``. With
            ``checkpoint_dir`` the checkpoint holds every run (and ``history_<i>.npz`` its
            history), and a later call with fresh models and the same arguments continues
            exactly where the runs stopped (``resume="must"``/``"never"`` as in
            :func:`pinnlib.train`).

    Returns:
        One :class:`~pinnlib.training.history.History` per run, in the order of ``models``.
        Raises :class:`~pinnlib.training.step.NonFiniteLossError` (a ``FloatingPointError``)
        naming the run, step and term when a loss turns NaN or infinite (the histories so far
        are in ``error.histories``).
    """
    if plateau is not None:
        raise ValueError(
            "train_together does not take plateau=: a ReduceOnPlateau stops its run at a step "
            "of its own, but runs trained together share one loop (and stacked runs one "
            "optimizer); train each run with pinnlib.train(..., plateau=...)"
        )
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
    check_instance("pde", pde, PDE, "a pinnlib PDE")
    o = _shared_options(options)
    check_jit_compile(o["jit_compile"])
    factory, made = _optimizer_factory(optimizer, o["learning_rate"]), []
    first = _fresh(factory, made)
    residual_balancers = [
        type(b).__name__ for b in balancers if b is not None and b.needs_residuals
    ]
    if stacked and residual_balancers:
        raise ValueError(
            f"stacked runs cannot use {residual_balancers[0]}: it takes per-point Jacobians of "
            "one run's residuals with respect to that run's own weights, and a stacked network "
            "holds every run's weights in the same variables (per-run Jacobians of a stack are "
            "not implemented); pass stacked=False (grouped runs) or leave it None"
        )
    if stacked is None:
        stacked = (
            not residual_balancers
            and o["derivative_mode"] != "tape"
            and pde.supports_stacking
            and stackable(models)
            and StackedRuns.accepts(first)
        )
    elif stacked and o["derivative_mode"] == "tape":
        raise ValueError("stacked networks need forward mode: derivative_mode='tape' given")
    common = {k: o[k] for k in ("n_interior", "n_boundary", "derivative_mode")}
    if stacked:
        runs = [Run(m, pde, b, None, s, **common) for m, b, s in zip(models, balancers, seeds)]
        layout = StackedRuns(runs, first, o["jit_compile"])
    else:
        optimizers = [first] + [_fresh(factory, made) for _ in range(n - 1)]
        runs = [
            Run(m, pde, b, o, s, **common)
            for m, b, o, s in zip(models, balancers, optimizers, seeds)
        ]
        layout = SeparateRuns(runs, o["jit_compile"])
    schedule = ("eval_every", "eval_points", "progress", "checkpoint_dir", "checkpoint_every")
    return train_runs(layout, steps, *(o[k] for k in schedule), o["chunk"], o["resume"])
