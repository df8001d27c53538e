"""The training engine: one compiled step and one Python loop for one run or many.

A reader can follow it top to bottom, one small module a concept:

* :mod:`~pinnlib.training.step`: the one balanced-gradient step (loss terms, finiteness guard,
  balancer, weighted gradients, optimizer), shared by every way pinnlib trains, and
  :class:`~pinnlib.training.step.NonFiniteLossError`;
* :mod:`~pinnlib.training.runs`: a run's state (:class:`~pinnlib.training.runs.Run`) and the
  layouts that put runs into one compiled step: separate networks (one run, or several
  grouped) or several same-size networks stacked into one batched network;
* :mod:`~pinnlib.training.loop`: the only Python loop (chunks, read-back, evaluation,
  progress bar, interrupt, checkpoints);
* :mod:`~pinnlib.training.checkpoints`: the checkpoint folder (what it holds, in which order it
  is written, how a resume is checked: ``resume="auto" | "must" | "never"``);
* :mod:`~pinnlib.training.distributed`: one run data-parallel on the devices of a
  ``tf.distribute`` strategy (a layout around the same step);
* :mod:`~pinnlib.training.history`: what a run records;
* :mod:`~pinnlib.training.plateau`: :class:`~pinnlib.training.plateau.ReduceOnPlateau`, the
  learning rate lowered when the evaluated error stops improving (Bischof & Kraus);
* :mod:`~pinnlib.training.lbfgs`: :func:`pinnlib.lbfgs`, L-BFGS fine-tuning after Adam on
  fixed points with the balancer's weights frozen (Raissi et al.);
* the front ends :mod:`~pinnlib.training.trainer` (:func:`pinnlib.train`,
  :class:`pinnlib.Trainer`), :mod:`~pinnlib.training.together`
  (:func:`pinnlib.train_together`) and :mod:`~pinnlib.training.keras_model`
  (:class:`pinnlib.PINNModel`, the ``fit`` path).

How one training step flows (all of it inside one ``tf.function``)::

    PDE.sample ─► points ─► model ─► derivatives ─► loss terms L_i ─► finite? ─► balancer λ
      ─► gradient of Σ λ_i L_i (λ constant) ─► optimizer.apply ─► step + 1
                                              └─► (losses, λ) ─► read back once per chunk
                                                   ─► History, evaluation, checkpoint
"""

from .history import History
from .keras_model import PINNModel
from .lbfgs import lbfgs
from .plateau import ReduceOnPlateau
from .step import NonFiniteLossError
from .together import train_together
from .trainer import Trainer, train

__all__ = [
    "History",
    "NonFiniteLossError",
    "PINNModel",
    "ReduceOnPlateau",
    "Trainer",
    "lbfgs",
    "train",
    "train_together",
]
