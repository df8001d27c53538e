"""Training scenarios under ``tf.distribute``, run by tests/test_distributed.py.

TensorFlow fixes its devices when it first initialises them, and the pytest process has done
that long before these tests run, so the scenarios run here, in fresh interpreters. Each trains
through ``pinnlib.train`` and stores what the tests compare (histories, weights, the
per-replica copies of every variable, error messages) in an ``.npz`` file::

    python tests/distributed_scenarios.py mirrored OUT.npz   # two logical CPU devices
    TF_CONFIG=... python tests/distributed_scenarios.py worker OUT.npz   # one of two workers

(``import pinnlib`` initialises no device, so the devices can be split after importing it.)
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

import pinnlib

STEPS, LOOKBACK_STEP = 50, 7
# Points of the whole step: the two-replica runs compute on half of them per replica.
POINTS = dict(n_interior=64, n_boundary=32)
BALANCERS = {
    "sum": lambda: pinnlib.Sum(2),
    # rho = 0.5: the lookback to step 0 is drawn on about half the steps, so replicas whose
    # Bernoulli draws differed would show it at once.
    "relobralo": lambda: pinnlib.ReLoBRaLo(2, rho=0.5, seed=3),
    "lra": lambda: pinnlib.LRAnnealing(2, update_every=5),
    # pinnlib 0.2.0's plain-descent form: its weights move far enough in these few steps for the
    # comparisons to mean something (the Adam form moves ~1e-3 per step).
    "gradnorm": lambda: pinnlib.GradNorm(2, update="sgd"),
    "config": lambda: pinnlib.ConFIG(2),
}


class BlowsUpOnOneReplica(pinnlib.Helmholtz):
    """Helmholtz whose edge residual is infinite on replica 1 only, at one step."""

    def __init__(self, bad_step: int):
        super().__init__()
        self.bad_step = bad_step
        self.calls = tf.Variable(0, dtype=tf.int64, trainable=False)  # mirrored: one per replica

    def residuals(self, model, points, mode="auto"):
        res = super().residuals(model, points, mode=mode)
        call = self.calls.assign_add(1) - 1
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        hit = tf.logical_and(tf.equal(call, self.bad_step), tf.equal(replica, 1))
        res["L_b"] += tf.where(hit, tf.constant(np.inf), tf.constant(0.0))
        return res


def build(balancer: str, strategy=None, pde=None):
    """A seeded network and balancer, created in ``strategy``'s scope when given."""
    pde = pde or pinnlib.Helmholtz()
    box = (list(pde.lower), list(pde.upper))
    scope = strategy.scope() if strategy else _NoScope()
    with scope:
        model = pinnlib.mlp(2, 2, 16, seed=0, input_range=box)
        return model, BALANCERS[balancer]()


class _NoScope:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def components(variable) -> list[np.ndarray]:
    """Every replica's copy of a (mirrored) variable."""
    if isinstance(variable, keras.Variable):
        variable = variable.value  # its tf.Variable
    return [np.asarray(v.numpy()) for v in getattr(variable, "values", [variable])]


def all_state(trainer: pinnlib.Trainer) -> list:
    """Every variable that decides the rest of a run: network, optimizer, balancer, samplers."""
    b = trainer.balancer
    return [
        *trainer.model.variables,
        *trainer.optimizer.variables,
        *b.variables,
        *([b.generator.state] if hasattr(b, "generator") else []),
        trainer.generator.state,
        trainer.step,
    ]


def run(out: dict, key: str, balancer: str, strategy=None, steps=STEPS, **kwargs):
    model, bal = build(balancer, strategy)
    trainer = pinnlib.Trainer(
        model, pinnlib.Helmholtz(), bal, strategy=strategy, jit_compile=False, seed=1,
        learning_rate=1e-2, **POINTS,
    )  # fmt: skip
    h = trainer.run(steps, eval_every=25, eval_points=16, progress=False, **kwargs)
    out[f"{key}/losses"], out[f"{key}/lambdas"] = h.losses, h.lambdas
    out[f"{key}/weights"] = np.concatenate([w.reshape(-1) for w in model.get_weights()])
    out[f"{key}/error"] = h.final_error
    out[f"{key}/info"] = str(h.info)
    if strategy is not None:  # 1 where every replica holds the same copy of a variable
        same = [
            all(np.array_equal(c[0], x) for x in c[1:]) for c in map(components, all_state(trainer))
        ]
        out[f"{key}/replicas_agree"] = np.array(same)
        out[f"{key}/copies"] = np.array([len(components(v)) for v in all_state(trainer)])
    return trainer


def failure(out: dict, key: str, make) -> None:
    try:
        make()
    except Exception as error:  # noqa: BLE001 - the test asserts the type and the message
        out[f"{key}/type"], out[f"{key}/message"] = type(error).__name__, str(error)
    else:
        out[f"{key}/type"], out[f"{key}/message"] = "none", ""


def mirrored(path: str) -> None:
    """Two logical devices on the one physical CPU (before any TensorFlow operation)."""
    (cpu,) = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    out: dict = {"replicas": strategy.num_replicas_in_sync}
    # One device with all the points against two replicas with half each.
    for name in BALANCERS:
        run(out, f"{name}/one", name)
        run(out, f"{name}/two", name, strategy)

    # Resume under the strategy, and on one device, from a checkpoint saved under it.
    work = Path(tempfile.mkdtemp())
    try:
        saved, copy = work / "saved", work / "copy"
        run(out, "resume/first", "relobralo", strategy, steps=30, checkpoint_dir=saved,
            checkpoint_every=10)  # fmt: skip
        shutil.copytree(saved, copy)
        run(out, "resume/two", "relobralo", strategy, checkpoint_dir=saved, checkpoint_every=10)
        run(out, "resume/one", "relobralo", None, checkpoint_dir=copy, checkpoint_every=10)
    finally:
        shutil.rmtree(work)

    # A loss that is infinite on one replica stops both before the step.
    with strategy.scope():
        pde = BlowsUpOnOneReplica(LOOKBACK_STEP)
    model, bal = build("relobralo", strategy, pde)
    trainer = pinnlib.Trainer(model, pde, bal, strategy=strategy, jit_compile=False, chunk=5,
                              seed=1, learning_rate=1e-2, **POINTS)  # fmt: skip
    try:
        trainer.run(20, eval_points=16, progress=False)
        out["nan/raised"] = "none"
    except pinnlib.NonFiniteLossError as error:
        out["nan/raised"] = [error.term, str(error.step), str(error.value)]
        out["nan/losses"] = error.history.losses
    out["nan/steps"] = [int(trainer.step.numpy()), int(bal.step.numpy())]
    out["nan/finite"] = all(np.all(np.isfinite(w)) for w in model.get_weights())
    out["nan/replicas_agree"] = [
        all(np.array_equal(c[0], x) for x in c[1:]) for c in map(components, all_state(trainer))
    ]

    # Bad input.
    def trainer_with(**changes):
        model, bal = build("sum", strategy)
        args = dict(model=model, pde=pinnlib.Helmholtz(), balancer=bal, strategy=strategy,
                    jit_compile=False, **POINTS)  # fmt: skip
        args.update(changes)
        return pinnlib.Trainer(**args)

    # The natural call, with jit_compile left at its default ("auto"), trains under the strategy.
    model, bal = build("sum", strategy)
    history = pinnlib.train(model, pinnlib.Helmholtz(), bal, steps=3, strategy=strategy,
                            progress=False, eval_points=16, **POINTS)  # fmt: skip
    out["default/steps"] = int(history.info["steps"])
    out["default/finite"] = bool(np.all(np.isfinite(history.losses)))

    failure(out, "odd", lambda: trainer_with(n_interior=63))
    failure(out, "xla", lambda: trainer_with(jit_compile=True))
    failure(out, "model", lambda: trainer_with(model=build("sum")[0]))
    failure(out, "balancer", lambda: trainer_with(balancer=pinnlib.Sum(2)))
    outside = keras.optimizers.Adam(1e-2)  # created outside the strategy's scope
    failure(out, "optimizer", lambda: trainer_with(optimizer=outside))

    def fit_under_strategy():
        with strategy.scope():
            model, bal = build("sum", strategy)
            keras_model = pinnlib.PINNModel(model, pinnlib.Helmholtz(), bal, **POINTS)
            keras_model.compile(keras.optimizers.Adam(1e-2))
        keras_model.fit(steps_per_epoch=2, epochs=1, verbose=0)

    failure(out, "fit", fit_under_strategy)
    np.savez(path, **out)


def worker(path: str) -> None:
    """One worker of a MultiWorkerMirroredStrategy cluster (``TF_CONFIG``), one replica each."""
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    out: dict = {"replicas": strategy.num_replicas_in_sync}
    run(out, "worker", "relobralo", strategy, steps=20)
    np.savez(path, **out)


if __name__ == "__main__":
    {"mirrored": mirrored, "worker": worker}[sys.argv[1]](sys.argv[2])
