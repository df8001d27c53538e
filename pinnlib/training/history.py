"""What a run records: the loss terms and weights of every step, and the error at evaluations.

The training loop (:mod:`pinnlib.training.loop`) appends to a :class:`History` once per chunk
of steps (:meth:`History.extend`) and once per evaluation (:meth:`History.record_evaluation`);
a hand-written loop can use the same two methods. The plots of :mod:`pinnlib.plot` read it.
Introduced in the chapter "A PINN from scratch".
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["History"]

_STEP_ARRAYS = ("step", "losses", "lambdas", "total")
_EVAL_ARRAYS = ("eval_step", "rel_l2", "mse", "time", "learning_rate")


@dataclass
class History:
    """What a run records. Arrays are NumPy; one row per training step or per evaluation.

    Attributes:
        term_names: names of the loss terms, in column order.
        step: index of each recorded training step.
        losses: ``(steps, terms)`` loss terms, as evaluated at that step (before its update).
        lambdas: ``(steps, terms)`` weights the balancer used at that step (for
            :class:`~pinnlib.ConFIG`, the coefficients ``w_i`` of its update
            ``g_c = sum_i w_i grad L_i``: the weights that step applied).
        total: weighted total loss per step.
        eval_step: steps at which the error was measured (0 = before training).
        rel_l2: relative L2 error against the exact/reference solution on the grid.
        mse: mean squared error against the exact/reference solution on the grid.
        time: training wall time (seconds, evaluation excluded) at each evaluation.
        learning_rate: the optimizer's learning rate at each evaluation (the value a schedule or
            :class:`~pinnlib.training.plateau.ReduceOnPlateau` gives the next step; NaN where
            none applies, e.g. during L-BFGS or in files written before pinnlib 0.3).
        phases: where each optimizer's phase starts, ``[{"name": "adam", "step": 0},
            {"name": "lbfgs", "step": 3000}]`` after :func:`pinnlib.lbfgs`; empty for a run
            of one phase.
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
    learning_rate: np.ndarray = field(default_factory=lambda: np.zeros(0))
    phases: list = field(default_factory=list)
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        n = len(self.term_names)
        if self.losses is None:
            self.losses = np.zeros((0, n))
        if self.lambdas is None:
            self.lambdas = np.zeros((0, n))

    # -- recording -------------------------------------------------------------------------
    def extend(self, first_step: int, losses: np.ndarray, lambdas: np.ndarray) -> None:
        """Append consecutive steps ``first_step, first_step + 1, ...``: one row of ``losses``
        and ``lambdas`` (each ``(rows, terms)``) per step; ``total`` is their weighted sum."""
        losses = np.asarray(losses, np.float64).reshape(-1, len(self.term_names))
        lambdas = np.asarray(lambdas, np.float64).reshape(losses.shape)
        self.step = np.concatenate([self.step, np.arange(first_step, first_step + len(losses))])
        self.losses = np.concatenate([self.losses, losses])
        self.lambdas = np.concatenate([self.lambdas, lambdas])
        self.total = np.concatenate([self.total, np.sum(losses * lambdas, axis=1)])

    def record_evaluation(
        self,
        step: int,
        rel_l2: float,
        mse: float,
        seconds: float,
        learning_rate: float = float("nan"),
    ) -> None:
        """Append one evaluation: the errors at ``step`` after ``seconds`` of training, and the
        learning rate then (NaN: not known)."""
        self.eval_step = np.append(self.eval_step, step)
        self.rel_l2 = np.append(self.rel_l2, rel_l2)
        self.mse = np.append(self.mse, mse)
        self.time = np.append(self.time, seconds)
        self.learning_rate = np.append(self.learning_rate, learning_rate)

    def start_phase(self, name: str, step: int) -> None:
        """Mark that the optimizer ``name`` (``"adam"``, ``"lbfgs"``) takes over at ``step``;
        the first mark also names the phase before it (``"adam"``, from step 0)."""
        if not self.phases and step > 0:
            self.phases.append({"name": "adam", "step": 0})
        self.phases.append({"name": str(name), "step": int(step)})

    # -- reading ---------------------------------------------------------------------------
    @property
    def final_error(self) -> float:
        """The last measured relative L2 error (NaN if none was measured)."""
        return float(self.rel_l2[-1]) if self.rel_l2.size else float("nan")

    def term(self, name: str) -> np.ndarray:
        """The per-step values of one loss term."""
        return self.losses[:, self.term_names.index(name)]

    # -- files -----------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write the history to an ``.npz`` file."""
        arrays = {k: getattr(self, k) for k in _STEP_ARRAYS + _EVAL_ARRAYS}
        np.savez(
            path,
            term_names=np.array(self.term_names),
            info=json.dumps(self.info),
            phases=json.dumps(self.phases),
            **arrays,
        )

    @classmethod
    def load(cls, path: str | Path) -> History:
        """Read a history written by :meth:`save` (files of older versions too: their
        ``learning_rate`` is NaN, their ``phases`` empty)."""
        with np.load(path) as data:
            h = cls(tuple(str(s) for s in data["term_names"]), info=json.loads(str(data["info"])))
            for k in _STEP_ARRAYS + _EVAL_ARRAYS:
                if k in data.files:
                    setattr(h, k, data[k])
            if h.learning_rate.shape != h.eval_step.shape:  # before pinnlib 0.3, or a copy
                h.learning_rate = np.full(h.eval_step.shape, np.nan)  # that did not fill it
            if "phases" in data.files:
                h.phases = json.loads(str(data["phases"]))
        return h

    def truncate(self, steps: int) -> History:
        """The history of the first ``steps`` steps (used when resuming)."""
        keep, keep_eval = self.step < steps, self.eval_step <= steps
        h = History(self.term_names, info=dict(self.info))
        h.phases = [dict(p) for p in self.phases if p["step"] < steps]
        for k in _STEP_ARRAYS:
            setattr(h, k, getattr(self, k)[keep])
        if self.learning_rate.shape != self.eval_step.shape:  # built by hand without rates
            self.learning_rate = np.full(self.eval_step.shape, np.nan)
        for k in _EVAL_ARRAYS:
            setattr(h, k, getattr(self, k)[keep_eval])
        return h

    def __repr__(self) -> str:
        return (
            f"History({len(self.step)} steps, terms={self.term_names}, "
            f"final rel L2={self.final_error:.3g})"
        )
