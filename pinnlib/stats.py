"""Summaries of several runs that do not mislead: tail errors, medians, collapsed runs.

A PINN's error curve is noisy (points are resampled every step), so the *last* evaluation of a
run is one draw from a band that can span a factor of several; and the errors of several seeds
spread over orders of magnitude, so their arithmetic mean is set by the worst seed. The book
therefore reports, for every method and problem:

* the **tail error** of each run: the geometric mean of its relative L2 errors over the last
  ``window`` fraction of training (:func:`tail_error`);
* over seeds, the **median** and the **geometric mean** with the smallest and largest value
  (:func:`summarize`);
* runs whose network **collapsed** to (nearly) zero output, labelled as such: their relative
  error is about one, which is the error of the zero function, not a partial success
  (:func:`is_collapsed`);
* the **relative cost of a step**, timed in interleaved blocks within one process
  (:func:`interleaved_times`, :func:`relative_cost`), not one run after another.

The chapter "Comparing the schemes" introduces these; every chapter that compares runs uses
them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "tail_error",
    "is_collapsed",
    "Summary",
    "summarize",
    "ratio",
    "interleaved_times",
    "relative_cost",
    "prediction_norm",
]

# A run whose prediction has less than this fraction of the exact solution's L2 norm has
# collapsed to (nearly) the zero function.
COLLAPSE_NORM = 0.05


def tail_error(history, window: float = 0.1) -> float:
    """Geometric mean of ``history.rel_l2`` over the evaluations in the last ``window`` of steps.

    With evaluations every 5 % of training and ``window=0.1`` that is the last two or three
    evaluations; at least the final one is always used. Returns NaN for a run without
    evaluations.
    """
    if not 0 < window <= 1:
        raise ValueError(f"window must be in (0, 1], got {window}")
    steps = np.asarray(history.eval_step, dtype=np.float64)
    errors = np.asarray(history.rel_l2, dtype=np.float64)
    if errors.size == 0:
        return float("nan")
    last = steps[-1]
    keep = steps >= last - window * last
    keep[-1] = True
    tail = errors[keep]
    if np.any(~np.isfinite(tail)) or np.any(tail <= 0):
        return float(tail[-1])
    return float(np.exp(np.mean(np.log(tail))))


def is_collapsed(prediction_norm: float) -> bool:
    """Whether a run's output collapsed: ``||u_hat|| / ||u|| < COLLAPSE_NORM`` (5 %)."""
    return bool(np.isfinite(prediction_norm) and prediction_norm < COLLAPSE_NORM)


@dataclass(frozen=True)
class Summary:
    """Errors of one method over seeds: the values and robust statistics of them."""

    values: tuple[float, ...]
    collapsed: int = 0

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def median(self) -> float:
        return float(np.median(self.values)) if self.values else float("nan")

    @property
    def geometric_mean(self) -> float:
        v = np.asarray(self.values, dtype=np.float64)
        if v.size == 0 or np.any(v <= 0) or np.any(~np.isfinite(v)):
            return float("nan")
        return float(np.exp(np.mean(np.log(v))))

    @property
    def low(self) -> float:
        return float(np.min(self.values)) if self.values else float("nan")

    @property
    def high(self) -> float:
        return float(np.max(self.values)) if self.values else float("nan")

    def __str__(self) -> str:
        text = f"{self.median:.3g} [{self.low:.3g}, {self.high:.3g}]"
        if self.collapsed:
            text += f" ({self.collapsed} of {self.n} collapsed)"
        return text


def summarize(values: Sequence[float], collapsed: Sequence[bool] | None = None) -> Summary:
    """A :class:`Summary` of one method's per-seed errors (and which of its runs collapsed)."""
    values = tuple(float(v) for v in values)
    if collapsed is not None and len(collapsed) != len(values):
        raise ValueError(f"got {len(values)} values but {len(collapsed)} collapsed flags")
    return Summary(values, collapsed=int(sum(bool(c) for c in collapsed or ())))


def ratio(method: Summary, baseline: Summary) -> float:
    """``median(method) / median(baseline)``; NaN when either is missing."""
    a, b = method.median, baseline.median
    if not (math.isfinite(a) and math.isfinite(b)) or b == 0:
        return float("nan")
    return a / b


# -- the price of a step, measured fairly -------------------------------------------------------
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


def interleaved_times(
    steps: dict[str, Callable[[], object]],
    rounds: int = 5,
    block_steps: int = 100,
    warmup: int = 1,
    clocks: dict[str, Callable[[], float]] | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Seconds per step of several step functions, timed in turns within one process.

    Timing one run after another on a shared machine lets a change of load pass for a
    difference between methods. Here each of ``rounds`` rounds times one block of
    ``block_steps`` calls of every function in turn (the order rotates from round to round), so
    the functions of a round share the same machine state. Before each block ``warmup`` untimed
    calls run; a block ends by reading back its last call's outputs (``.numpy()``), which waits
    for work still running asynchronously. Pass steps that are already compiled, such as
    :meth:`pinnlib.Trainer.train_step` of a trainer that has run, so that no block traces.

    Every block is read on each of ``clocks`` (default: ``"wall"``, :func:`time.perf_counter`,
    and ``"cpu"``, :func:`time.process_time`, the processor time of this process summed over
    its threads: on a machine shared with other programs the steadier of the two, since it
    does not count the time spent waiting for a core).

    Returns ``{clock: {name: seconds per step, one value per round}}``, names in the order given.
    """
    rounds = _check_count("rounds", rounds)
    block_steps = _check_count("block_steps", block_steps)
    if not isinstance(warmup, int) or isinstance(warmup, bool) or warmup < 0:
        raise ValueError(f"warmup must be an integer >= 0, got {warmup!r}")
    if not steps:
        raise ValueError("steps must name at least one step function")
    clocks = dict(CLOCKS if clocks is None else clocks)
    if not clocks:
        raise ValueError("clocks must name at least one clock")
    names = list(steps)
    times = {c: {name: [] for name in names} for c in clocks}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            step = steps[name]
            for _ in range(warmup):
                _wait(step())
            start = {c: clock() for c, clock in clocks.items()}
            for _ in range(block_steps):
                out = step()
            _wait(out)
            for c, clock in clocks.items():
                times[c][name].append((clock() - start[c]) / block_steps)
    return {c: {n: np.asarray(v, dtype=np.float64) for n, v in t.items()} for c, t in times.items()}


def relative_cost(times: dict[str, np.ndarray], baseline: str) -> dict[str, Summary]:
    """Time per step of each function relative to ``baseline``, from one clock of
    :func:`interleaved_times` (``times["cpu"]`` or ``times["wall"]``).

    The ratio is taken within each round (2 means twice the baseline's time per step) and
    summarised over the rounds: the median with the smallest and the largest round. The
    baseline against itself is 1 by construction; to see the machine's noise, time a second
    copy of the baseline (another compiled trainer of the same method) as one more entry.
    """
    if baseline not in times:
        raise ValueError(f"baseline {baseline!r} is not among the timed steps {list(times)}")
    base = np.asarray(times[baseline], dtype=np.float64)
    out = {}
    for name, t in times.items():
        t = np.asarray(t, dtype=np.float64)
        if t.shape != base.shape:
            raise ValueError(f"{name!r} has {t.size} rounds but {baseline!r} has {base.size}")
        out[name] = summarize(t / base)
    return out


def _check_count(name: str, value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


def _wait(out) -> None:
    """Read back every tensor in ``out`` (nested tuples, lists, dicts) to wait for it."""
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        for item in out:
            _wait(item)
    elif hasattr(out, "numpy"):
        out.numpy()


def prediction_norm(model, pde, n: int = 256) -> float:
    """``||u_hat|| / ||u||`` on an ``n``-per-axis grid over ``pde``'s domain.

    The number :func:`is_collapsed` judges: near zero for a network that learnt (nearly) the
    zero function, near one for one of the right size. Chapters that train their own runs call
    it on the trained model to label collapsed runs as ``pinnlib.study`` does for the stored
    study.
    """
    from .metrics import predict  # here, so that the rest of this module needs only NumPy

    grid, _ = pde.grid(n)
    exact = np.asarray(pde.exact(grid), dtype=np.float64).reshape(-1)
    pred = predict(model, grid).reshape(-1)
    return float(np.linalg.norm(pred) / np.linalg.norm(exact))
