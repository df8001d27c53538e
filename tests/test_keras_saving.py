"""Keras-native saving of ``PINNModel``: weights files, ``.keras`` files, ``ModelCheckpoint`` and
``BackupAndRestore`` keep network, optimizer, balancer (generator included) and sampler, so a
restored model continues exactly as an uninterrupted one (issue 15).

Each round trip is compared with an uninterrupted ``fit`` of the same configuration: the loss
terms and weights of every step (Keras logs, read by a callback), the final network weights and
the balancer's state. The restored models are built from *other* seeds, so whatever matches came
from the file. ReLoBRaLo runs with ``rho=0.5`` so that its random lookbacks happen often: a
generator that was not restored would draw other lookbacks and other weights.
"""

from __future__ import annotations

import h5py
import keras
import numpy as np
import pytest

import pinnlib
from pinnlib import GradNorm, LRAnnealing, Poisson1D, ReLoBRaLo, SoftAdapt, Sum
from pinnlib.nn import sine

# Two uninterrupted CPU runs may differ in the last bits (threaded reductions).
CLOSE = dict(rtol=1e-5, atol=1e-7)
STEPS = 4  # steps per epoch
EPOCHS, FIRST = 4, 2  # epochs in all; epochs before the interruption


def make(seed, balancer=None, activation="tanh"):
    """A compiled PINNModel on Poisson1D; everything seeded by ``seed``."""
    pde = Poisson1D()
    network = pinnlib.mlp(1, 2, 16, seed=seed, activation=activation, input_range=([0.0], [1.0]))
    balancer = balancer or ReLoBRaLo(2, seed=seed, rho=0.5, alpha=0.9)
    model = pinnlib.PINNModel(network, pde, balancer, n_interior=32, n_boundary=2, seed=seed)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False)
    return model


def fit(model, epochs, callbacks=(), **kwargs):
    """``fit`` that returns the logs of every step: ``(steps, 4)`` [L_f, L_b, λ_f, λ_b]."""
    rows = []
    keys = ("L_f", "L_b", "lambda_L_f", "lambda_L_b")
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: rows.append([float(logs[k]) for k in keys])
    )
    model.fit(
        epochs=epochs, steps_per_epoch=STEPS, verbose=0, callbacks=[*callbacks, record], **kwargs
    )
    return np.array(rows).reshape(-1, 4)


def state(model) -> dict[str, np.ndarray]:
    """Everything that decides the rest of the run, as arrays."""
    out = {f"balancer.{k}": v.numpy() for k, v in model.balancer.state_variables().items()}
    out["sampler"] = model.sampler.state.numpy()
    out["applied_steps"] = model.applied_steps.numpy()
    out["iterations"] = model.optimizer.iterations.numpy()
    return out


def assert_same_state(a, b, exact=True):
    sa, sb = state(a), state(b)
    assert sa.keys() == sb.keys()
    for key in sa:
        if exact or sa[key].dtype.kind in "iu":
            np.testing.assert_array_equal(sa[key], sb[key], err_msg=key)
        else:
            np.testing.assert_allclose(sa[key], sb[key], **CLOSE, err_msg=key)
    check = np.testing.assert_array_equal if exact else _close
    for wa, wb in zip(a.network.get_weights(), b.network.get_weights()):
        check(wa, wb)
    for va, vb in zip(a.optimizer.variables, b.optimizer.variables):
        check(va.numpy(), vb.numpy())


def _close(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)  # Adam's moments add up rounding


@pytest.fixture(scope="module")
def uninterrupted():
    """The reference: EPOCHS epochs in one go; its model and the logs of every step."""
    model = make(0)
    return model, fit(model, EPOCHS)


def continue_and_compare(restored, uninterrupted, start_epoch=FIRST):
    """Train ``restored`` to the end and compare with the uninterrupted run from ``start_epoch``."""
    reference, logs = uninterrupted
    assert int(restored.applied_steps.numpy()) == start_epoch * STEPS
    assert int(restored.balancer.step.numpy()) == start_epoch * STEPS
    rest = fit(restored, EPOCHS - start_epoch)
    np.testing.assert_allclose(rest, logs[start_epoch * STEPS :], **CLOSE)
    assert_same_state(restored, reference, exact=False)


def test_save_weights_and_load_weights(tmp_path, uninterrupted):
    first = make(0)
    fit(first, FIRST)
    assert int(first.balancer.step.numpy()) == FIRST * STEPS
    path = tmp_path / "run.weights.h5"
    first.save_weights(path)
    with h5py.File(path) as f:  # the balancer's state is in the file, by name
        assert sorted(f["balancer_state/vars"]) == sorted(first.balancer.state_variables())
    restored = make(7)  # other network, balancer generator, sampler
    restored.load_weights(path)
    assert_same_state(restored, first)  # bit for bit
    continue_and_compare(restored, uninterrupted)


def test_keras_file_round_trip_without_custom_objects(tmp_path, uninterrupted):
    first = make(0)
    fit(first, FIRST)
    path = tmp_path / "run.keras"
    first.save(path)
    restored = keras.models.load_model(path)
    assert isinstance(restored, pinnlib.PINNModel)
    assert repr(restored.balancer) == repr(first.balancer)
    assert repr(restored.pde) == repr(first.pde)
    assert (restored.n_interior, restored.n_boundary) == (32, 2)
    assert restored.optimizer.built and isinstance(restored.optimizer, keras.optimizers.Adam)
    assert_same_state(restored, first)
    continue_and_compare(restored, uninterrupted)


def test_keras_file_keeps_the_activations_forward_mode_knows(tmp_path):
    # A sine network with an input map (the registered Affine layer): the reloaded layers hold
    # the very functions pinnlib's forward mode recognises, and compute the same values.
    model = make(0, activation="sin")
    model.save(tmp_path / "sine.keras")
    back = keras.models.load_model(tmp_path / "sine.keras")
    hidden = [layer for layer in back.network.layers if layer.name.startswith("hidden")]
    assert hidden and all(layer.activation is sine for layer in hidden)
    assert [type(layer).__name__ for layer in back.network.layers][0] == "Affine"
    x = np.linspace(0, 1, 7, dtype=np.float32)[:, None]
    np.testing.assert_array_equal(back.network(x), model.network(x))


def test_model_checkpoint_saves_weights_only_files_that_resume(tmp_path, uninterrupted):
    model = make(0)
    pattern = str(tmp_path / "epoch{epoch}.weights.h5")
    save = keras.callbacks.ModelCheckpoint(pattern, save_weights_only=True)
    logs = fit(model, EPOCHS, callbacks=[save])
    np.testing.assert_allclose(logs, uninterrupted[1], **CLOSE)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"epoch{e}.weights.h5" for e in range(1, EPOCHS + 1)
    ]
    restored = make(7)
    restored.load_weights(tmp_path / f"epoch{FIRST}.weights.h5")  # Keras counts epochs from 1
    continue_and_compare(restored, uninterrupted)


class Interrupt(keras.callbacks.Callback):
    """Raises at the start of one epoch, as if the session died there."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt(f"interrupted at epoch {epoch}")


def test_backup_and_restore_continues_an_interrupted_fit(tmp_path, uninterrupted):
    folder = tmp_path / "backup"
    first = make(0)
    with pytest.raises(KeyboardInterrupt):
        fit(first, EPOCHS, callbacks=[keras.callbacks.BackupAndRestore(folder), Interrupt(FIRST)])
    assert (folder / "latest.weights.h5").exists()
    # "A new session": fresh objects from other seeds; the same fit call with the callback.
    restored = make(7)
    backup = keras.callbacks.BackupAndRestore(folder)
    rest = fit(restored, EPOCHS, callbacks=[backup])  # runs only the epochs that were missing
    reference, logs = uninterrupted
    np.testing.assert_allclose(rest, logs[FIRST * STEPS :], **CLOSE)
    assert_same_state(restored, reference, exact=False)
    assert not folder.exists()  # Keras deletes the backup after a completed fit


@pytest.mark.parametrize(
    "balancer",
    [
        lambda: Sum(2),
        lambda: pinnlib.Fixed([1.0, 10.0]),
        lambda: SoftAdapt(2, temperature=0.5),
        lambda: LRAnnealing(2, update_every=2),
        lambda: GradNorm(2),
        lambda: ReLoBRaLo(2, seed=3, rho=0.5),
        lambda: LRAnnealing(2, update_every=2, form="authors_code"),
        lambda: GradNorm(2, update="sgd"),
        lambda: pinnlib.GlobalGradNorm(2, update_every=2),
        lambda: pinnlib.HomoscedasticUncertainty(2),
    ],
    ids=[
        "Sum",
        "Fixed",
        "SoftAdapt",
        "LRAnnealing",
        "GradNorm",
        "ReLoBRaLo",
        "LRAnnealing-authors_code",
        "GradNorm-sgd",
        "GlobalGradNorm",
        "HomoscedasticUncertainty",
    ],
)
def test_every_balancer_round_trips(tmp_path, balancer):
    first = make(0, balancer())
    fit(first, 1)
    first.save(tmp_path / "m.keras")
    first.save_weights(tmp_path / "m.weights.h5")
    back = keras.models.load_model(tmp_path / "m.keras")
    assert type(back.balancer) is type(first.balancer)
    assert back.balancer.get_config() == first.balancer.get_config()
    assert_same_state(back, first)
    again = make(5, balancer())
    again.load_weights(tmp_path / "m.weights.h5")
    assert_same_state(again, first)
    # Both continue alike (their state, not only its shape, came back).
    a, b = fit(first, 1), fit(back, 1)
    np.testing.assert_allclose(a, b, **CLOSE)


def test_saving_before_fit_works(tmp_path):
    model = make(0)  # compiled, never trained (Keras used to call it "not built")
    model.save_weights(tmp_path / "fresh.weights.h5")
    other = make(3)
    other.load_weights(tmp_path / "fresh.weights.h5")
    for wa, wb in zip(model.network.get_weights(), other.network.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert other.layers == [other.network]  # the state holders stay out of the layers
    model.summary(print_fn=lambda *args, **kwargs: None)


def test_loading_another_balancer_type_is_refused(tmp_path):
    model = make(0)
    model.save_weights(tmp_path / "relobralo.weights.h5")
    other = make(0, SoftAdapt(2))
    with pytest.raises(ValueError, match=r"balancer \(SoftAdapt\).*generator\.state.*lambdas"):
        other.load_weights(tmp_path / "relobralo.weights.h5")
