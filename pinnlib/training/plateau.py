"""Lower the learning rate when the error stops improving: :class:`ReduceOnPlateau`.

Bischof & Kraus (arXiv 2110.09813) trained their published runs with Adam whose learning rate
was multiplied by 0.1 after a plateau of validation checks, and stopped after five reductions
(issue #23: no chapter of the book introduces it yet). Here the
validation check is the training loop's evaluation against the exact solution
(:mod:`pinnlib.training.loop`): after each evaluation the loop hands the measured error to
:meth:`ReduceOnPlateau.update`, which lowers the optimizer's learning rate or asks the loop to
stop. Pass it as ``pinnlib.train(..., plateau=pinnlib.ReduceOnPlateau())`` or to
:class:`pinnlib.Trainer`.

The rule, checked at every evaluation at a multiple of ``eval_every`` (the one before training
and an extra one at the end of a call are not checks, so a resumed run checks at exactly the
steps an uninterrupted one does)::

    value < best - min_delta  ──► best = value, wait = 0
            │ no
            ▼
    wait + 1 ≥ patience ──► reductions < max_reductions ──► learning rate × factor,
            │ no                       │ no                   reductions + 1, wait = 0
            ▼                          ▼
        wait + 1                 stop (if stop=True)

The papers' text ("stop after five reductions") leaves open whether the run stops at the fifth
reduction or at the next plateau after it; this class takes the second reading: the fifth
reduced rate gets its own plateau's worth of training, and the plateau that would need a sixth
reduction ends the run. The state (``best``, ``wait``, ``reductions``, ``stopped``) lives in
``tf.Variable``\\ s, which the run's checkpoint saves with the optimizer's learning rate, so a
resumed run reduces at the same steps as an uninterrupted one.

It sets the optimizer's learning-rate variable, so it needs an optimizer built with a number
as its learning rate; a ``LearningRateSchedule`` already decides the rate at every step and is
refused with a ValueError. Only one run at a time: :func:`pinnlib.train_together` refuses it
(its runs share one loop, and each run would stop at its own step). On the ``fit`` path
(:class:`pinnlib.PINNModel`) Keras' own ``keras.callbacks.ReduceLROnPlateau`` does this job
on a ``fit`` metric.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from ..validation import check_bool, check_choice, check_float, check_int

__all__ = ["MONITORS", "ReduceOnPlateau", "check_plateau"]

#: What the plateau may watch: the evaluation's mean squared error against the exact solution
#: (Bischof & Kraus' validation loss) or its relative L2 error.
MONITORS = ("mse", "rel_l2")


def _schedule(optimizer: keras.optimizers.Optimizer) -> bool:
    """Whether the optimizer's learning rate is decided by a schedule (or a callable)."""
    rate = getattr(optimizer, "_learning_rate", None)
    return isinstance(rate, keras.optimizers.schedules.LearningRateSchedule) or callable(rate)


class ReduceOnPlateau(tf.Module):
    """Multiply the learning rate by ``factor`` when the evaluated error stops improving.

    Args:
        factor: the multiplier, in (0, 1) (Bischof & Kraus: 0.1).
        patience: evaluations without an improvement before the rate is lowered (>= 1).
        min_delta: an improvement must lower the watched error by more than this (>= 0).
        max_reductions: how many times the rate may be lowered (>= 0; Bischof & Kraus: 5).
        stop: stop the run at the plateau after the last allowed reduction; ``False`` keeps
            training at the lowest rate.
        monitor: ``"mse"`` (the validation loss of Bischof & Kraus) or ``"rel_l2"``.

    Attributes:
        best, wait, reductions, stopped: the state (``tf.Variable``\\ s, checkpointed).
    """

    def __init__(
        self,
        factor: float = 0.1,
        patience: int = 5,
        min_delta: float = 0.0,
        max_reductions: int = 5,
        stop: bool = True,
        monitor: str = "mse",
    ):
        super().__init__(name="reduce_on_plateau")
        self.factor = check_float("factor", factor, 0, 1, low_open=True, high_open=True)
        self.patience = check_int("patience", patience, 1)
        self.min_delta = check_float("min_delta", min_delta, 0)
        self.max_reductions = check_int("max_reductions", max_reductions, 0)
        self.stop = check_bool("stop", stop)
        self.monitor = check_choice("monitor", monitor, MONITORS)
        self.best = tf.Variable(np.inf, dtype=tf.float64, trainable=False, name="best")
        self.wait = tf.Variable(0, dtype=tf.int64, trainable=False, name="wait")
        self.reductions = tf.Variable(0, dtype=tf.int64, trainable=False, name="reductions")
        self.stopped = tf.Variable(False, trainable=False, name="stopped")

    def settings(self) -> dict:
        """The constructor's arguments (JSON-ready; a checkpoint folder records them)."""
        return {
            "factor": self.factor,
            "patience": self.patience,
            "min_delta": self.min_delta,
            "max_reductions": self.max_reductions,
            "stop": self.stop,
            "monitor": self.monitor,
        }

    def state_variables(self) -> dict[str, tf.Variable]:
        """The state, by name."""
        return {
            "best": self.best,
            "wait": self.wait,
            "reductions": self.reductions,
            "stopped": self.stopped,
        }

    def check_optimizer(self, optimizer: keras.optimizers.Optimizer) -> None:
        """A ValueError if ``optimizer``'s learning rate cannot be set (a schedule)."""
        if _schedule(optimizer):
            raise ValueError(
                "ReduceOnPlateau sets the optimizer's learning rate, but this optimizer's rate "
                "is a LearningRateSchedule (or a callable), which decides the rate at every "
                "step itself: pass a number as learning_rate, or drop plateau="
            )

    def update(self, value: float, optimizer: keras.optimizers.Optimizer) -> bool:
        """Take one evaluation's watched error; lower ``optimizer``'s rate when due.

        Returns ``True`` when the run should stop now (also for every call after that).
        """
        if bool(self.stopped.numpy()):
            return True
        value = float(value)
        if value < float(self.best.numpy()) - self.min_delta:
            self.best.assign(value)
            self.wait.assign(0)
            return False
        self.wait.assign_add(1)
        if int(self.wait.numpy()) < self.patience:
            return False
        if int(self.reductions.numpy()) < self.max_reductions:
            self.check_optimizer(optimizer)
            rate = float(tf.convert_to_tensor(optimizer.learning_rate).numpy())
            optimizer.learning_rate = rate * self.factor
            self.reductions.assign_add(1)
            self.wait.assign(0)
            return False
        if self.stop:
            self.stopped.assign(True)
        return self.stop

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings().items())
        return f"ReduceOnPlateau({args})"


def check_plateau(plateau) -> ReduceOnPlateau | None:
    """``plateau`` if it is ``None`` or a :class:`ReduceOnPlateau`, else a TypeError."""
    if plateau is not None and not isinstance(plateau, ReduceOnPlateau):
        raise TypeError(
            f"plateau must be a pinnlib.ReduceOnPlateau or None, got {type(plateau).__name__}"
        )
    return plateau
