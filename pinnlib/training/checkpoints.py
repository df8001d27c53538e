"""Checkpoints of the training loop: ``checkpoint_dir=`` and ``resume=`` of :func:`pinnlib.train`,
:meth:`pinnlib.Trainer.run` and :func:`pinnlib.train_together`.

Every ``checkpoint_every`` steps (and at the end) the folder receives, in this order:

1. ``runs.json``, a small description of what is trained (the layout, and per run the PDE,
   its loss terms, the balancer type, the network's dtype and weight shapes, the optimizer
   type), written once;
2. ``history.npz`` (``history_<i>.npz`` for several runs), each replaced atomically (written
   to a temporary file, then renamed);
3. the ``tf.train.Checkpoint`` (``ckpt-<step>``; the two newest are kept) of the network,
   optimizer, balancer, point sampler and step counter.

The history goes first so that a process killed at any moment leaves a consistent pair: a
history at least as new as the newest checkpoint, which a resume cuts back to the
checkpoint's step. (Written the other way round, a kill between the two writes lost one period
of history rows.)

A later call with the same folder resumes from the newest checkpoint when its runs are fresh
(at step 0). First the saved description is compared with the call's: another PDE, balancer
type, number of loss terms, network shape, optimizer type or number of runs is a ValueError
naming both sides, before anything is restored. A resume prints one line, ``resumed from
step N``, on stdout (where a notebook shows it, and where it is shown again on every resume,
unlike a repeated warning). ``resume`` says what the caller expects:

* ``"auto"`` (default): resume if the folder holds a checkpoint, else start from step 0;
* ``"must"``: a ValueError naming the folder if it holds no checkpoint (a typo in the path
  would otherwise start a new run silently);
* ``"never"``: start from step 0, and a ValueError if the folder already holds a checkpoint
  that would be resumed (pinnlib never deletes your files: choose another folder or delete it).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import tensorflow as tf

from ..validation import check_choice, check_int
from .history import History
from .runs import RunLayout

__all__ = ["DESCRIPTION", "RESUME_MODES", "Checkpoints", "describe"]

#: The values of ``resume``.
RESUME_MODES = ("auto", "must", "never")
#: The file that describes the runs of a checkpoint folder.
DESCRIPTION = "runs.json"


def describe(layout: RunLayout) -> dict:
    """What a checkpoint folder must match to be resumed by ``layout`` (JSON-ready)."""
    runs = layout.runs
    kind = "stacked" if getattr(layout, "optimizer", None) is not None else "separate"
    described = []
    for run in runs:
        optimizer = run.optimizer if run.optimizer is not None else layout.optimizer
        described.append(
            {
                "pde": repr(run.pde),
                "terms": list(run.pde.term_names),
                "balancer": type(run.balancer).__name__,
                "num_terms": run.balancer.num_terms,
                "network": {
                    "dtype": run.dtype.name,
                    "shapes": [list(v.shape) for v in run.model.trainable_variables],
                },
                "optimizer": type(optimizer).__name__,
            }
        )
    return {"runs": len(runs), "layout": kind if len(runs) > 1 else "single", "each": described}


_FIELDS = (
    ("pde", "PDE"),
    ("terms", "loss terms"),
    ("balancer", "balancer"),
    ("num_terms", "balancer's number of terms"),
    ("network", "network"),
    ("optimizer", "optimizer"),
)


def _network(value: dict) -> str:
    return f"{value['dtype']} network with weight shapes {value['shapes']}"


def _difference(saved: dict, now: dict) -> str | None:
    """The first difference between two descriptions, in words (``None``: they match)."""
    if saved.get("plateau") != now.get("plateau"):  # absent from older files: no plateau
        return f"its plateau= is {saved.get('plateau')}, this call's is {now.get('plateau')}"
    if (saved.get("runs"), saved.get("layout")) != (now["runs"], now["layout"]):
        return (
            f"it holds {saved.get('runs')} run(s) laid out {saved.get('layout')!r}, this call "
            f"trains {now['runs']} laid out {now['layout']!r}"
        )
    for i, (a, b) in enumerate(zip(saved["each"], now["each"])):
        where = "" if now["runs"] == 1 else f"run {i}: "
        for key, label in _FIELDS:
            if a.get(key) != b[key]:
                show = _network if key == "network" else repr
                return f"{where}its {label} is {show(a.get(key))}, this call's is {show(b[key])}"
    return None


def _replace(path: Path, write) -> None:
    """``write(temporary path)``, then rename over ``path``: readers see the old or the new file."""
    partial = path.with_name(f"{path.stem}.partial{path.suffix}")
    write(partial)
    os.replace(partial, path)


class Checkpoints:
    """Saves a layout's checkpoint and histories every ``every`` steps; restores on a resume.

    Args:
        layout: the runs.
        directory: the checkpoint folder (``None``: no checkpoints).
        every: period in steps (default 1000; needs ``directory``).
        resume: ``"auto"``, ``"must"`` or ``"never"`` (see the module docstring).
        plateau: a :class:`~pinnlib.training.plateau.ReduceOnPlateau` whose state is saved
            with the rest (its settings go into ``runs.json``, under ``"plateau"``).
    """

    def __init__(self, layout: RunLayout, directory, every, resume: str = "auto", plateau=None):
        check_choice("resume", resume, RESUME_MODES)
        self.layout, self.manager = layout, None
        if directory is None:
            if every is not None:
                raise ValueError("checkpoint_every needs a checkpoint_dir")
            if resume != "auto":
                raise ValueError(f"resume={resume!r} needs a checkpoint_dir")
            return
        self.every = check_int("checkpoint_every", 1000 if every is None else every, 1)
        self.directory = Path(directory)
        runs = layout.runs
        self.files = (
            ["history.npz"] if len(runs) == 1 else [f"history_{i}.npz" for i in range(len(runs))]
        )
        self.description, self.described = describe(layout), False
        existed = self.directory.is_dir()
        checkpoint = layout.checkpoint()
        if plateau is not None:
            self.description["plateau"] = plateau.settings()
            checkpoint.plateau = plateau
        self.manager = tf.train.CheckpointManager(checkpoint, str(directory), max_to_keep=2)
        latest = self.manager.latest_checkpoint
        if latest is None:
            if resume == "must":
                state = "holds no checkpoint" if existed else "does not exist"
                raise ValueError(
                    f"resume='must', but the checkpoint_dir {str(self.directory)!r} {state} "
                    f"(absolute path: {self.directory.resolve()}); check the path"
                )
            return
        self._compare()
        if max(layout.steps()) > 0:  # runs that trained already continue in memory
            return
        if resume == "never":
            raise ValueError(
                f"resume='never', but the checkpoint_dir {str(self.directory)!r} already holds "
                f"a checkpoint ({Path(latest).name}): use another folder, or delete this one "
                "to start afresh (or resume='auto' to continue it)"
            )
        self._restore(checkpoint, latest)

    def _compare(self) -> None:
        """A ValueError if the folder's ``runs.json`` describes other runs than this call's."""
        path = self.directory / DESCRIPTION
        if not path.exists():  # written by pinnlib before 0.3: nothing to compare with
            return
        saved = json.loads(path.read_text(encoding="utf-8"))
        difference = _difference(saved, self.description)
        if difference is not None:
            raise ValueError(
                f"the checkpoint in {str(self.directory)!r} belongs to other runs: "
                f"{difference}. Use another checkpoint_dir for this run (or delete that folder "
                "to start afresh)"
            )
        self.described = True

    def _restore(self, checkpoint: tf.train.Checkpoint, latest: str) -> None:
        status = None
        try:
            status = checkpoint.restore(latest)
            status.assert_existing_objects_matched()
        except (AssertionError, ValueError) as error:  # missing objects, other shapes
            if status is not None:
                status.expect_partial()  # no second complaint when it is garbage-collected
            raise ValueError(
                f"the checkpoint in {str(self.directory)!r} belongs to other runs (another "
                f"number of runs, model, optimizer, balancer or stacking): {error}"
            ) from None
        step = min(self.layout.steps())
        for run, name in zip(self.layout.runs, self.files):
            saved = self.directory / name
            if saved.exists():
                history = History.load(saved)
                if history.step.size < step:  # only files written by pinnlib before 0.3
                    warnings.warn(
                        f"{saved} holds {history.step.size} steps, the checkpoint {step}: the "
                        "history of the steps between is missing",
                        stacklevel=4,
                    )
                run.history = history.truncate(step)
        clock = self.layout.runs[0].history.time  # training seconds at each evaluation
        self.layout.seconds = float(clock[-1]) if clock.size else 0.0
        print(f"resumed from step {step} (checkpoint in {self.directory})", flush=True)

    def next(self, now: int) -> int:
        """The step of the next save (no limit without a directory)."""
        return (now // self.every + 1) * self.every if self.manager else np.iinfo(np.int64).max

    def save_if_due(self, now: int, steps: int, force: bool = False) -> None:
        """Save at a multiple of ``every`` and at the end (or now, with ``force``: a run that
        stops early): description, histories, checkpoint."""
        if self.manager is None or (now % self.every and now != steps and not force):
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.described:
            text = json.dumps(self.description, indent=1)
            _replace(self.directory / DESCRIPTION, lambda p: p.write_text(text, encoding="utf-8"))
            self.described = True
        for run, name in zip(self.layout.runs, self.files):  # before the checkpoint: see above
            _replace(self.directory / name, run.history.save)
        self.manager.save(checkpoint_number=now)
