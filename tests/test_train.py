"""Tests of pinnlib.train / Trainer (one run through the engine), PINNModel (the fit path),
History and the budget switch.

Tiny networks, few points and few steps: these check that training works, repeats, resumes
and fails loudly, not how well it trains. The fixtures ``small``, ``tiny`` and ``blows_up`` are
in conftest.py; argument validation is in test_validation.py.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import pinnlib
from pinnlib import (
    Burgers,
    GradNorm,
    Helmholtz,
    History,
    Kirchhoff,
    LRAnnealing,
    NonFiniteLossError,
    Poisson1D,
    ReLoBRaLo,
    SoftAdapt,
    Sum,
    Trainer,
)

# The loop evaluates through a compiled forward pass (fused kernels), pinnlib.relative_l2_error
# eagerly: one model, outputs equal to float32 rounding, so the errors agree to about 1e-6.
EVAL = dict(rel=1e-4)


# -- a short run trains -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "pde",
    [Poisson1D(), Helmholtz(), Kirchhoff(), Kirchhoff(boundary="separate"), Burgers()],
    ids=["poisson", "helmholtz", "kirchhoff", "kirchhoff-separate", "burgers"],
)
def test_short_run_lowers_the_loss(pde, tiny, small):
    steps = 100
    model = tiny(pde)
    h = pinnlib.train(
        model, pde, Sum(pde.num_terms), steps=steps, learning_rate=1e-2, seed=0, **small
    )
    assert h.total[-10:].mean() < 0.95 * h.total[:10].mean()
    # History shapes and contents.
    n = pde.num_terms
    assert h.term_names == pde.term_names
    np.testing.assert_array_equal(h.step, np.arange(steps))
    assert h.losses.shape == h.lambdas.shape == (steps, n) and h.total.shape == (steps,)
    np.testing.assert_array_equal(h.lambdas, 1.0)
    np.testing.assert_allclose(h.total, h.losses.sum(axis=1), rtol=1e-12)
    assert np.all(np.isfinite(h.losses)) and np.all(h.losses >= 0)
    # Default eval_every = steps // 20; the first evaluation is before training, the last at the end.
    assert h.eval_step[0] == 0 and h.eval_step[-1] == steps
    assert np.all(np.diff(h.eval_step) > 0) and np.all(h.eval_step % 5 == 0)
    assert h.rel_l2.shape == h.mse.shape == h.time.shape == h.eval_step.shape
    assert np.all(np.isfinite(h.rel_l2)) and np.all(np.diff(h.time) >= 0)
    assert h.final_error == pytest.approx(pinnlib.relative_l2_error(model, pde, n=16), **EVAL)
    assert h.info["steps"] == steps and h.info["jit_compile"] is False


def test_evaluations_measure_the_model(tiny, small):
    pde = Poisson1D()
    model = tiny(pde, seed=3)
    before = (
        pinnlib.relative_l2_error(model, pde, n=16),
        pinnlib.mean_squared_error(model, pde, n=16),
    )
    h = pinnlib.train(model, pde, steps=20, eval_every=5, learning_rate=1e-2, seed=1, **small)
    np.testing.assert_array_equal(h.eval_step, [0, 5, 10, 15, 20])
    assert (h.rel_l2[0], h.mse[0]) == pytest.approx(before, **EVAL)
    assert h.rel_l2[-1] == pytest.approx(pinnlib.relative_l2_error(model, pde, n=16), **EVAL)
    assert h.mse[-1] == pytest.approx(pinnlib.mean_squared_error(model, pde, n=16), **EVAL)
    # The model changed between evaluations by far more than that rounding.
    assert abs(h.rel_l2[-1] / h.rel_l2[0] - 1) > 1e-2


# -- one compiled step, by hand -------------------------------------------------------------------
def test_train_step_is_one_step_of_run(tiny):
    def trainer():
        pde = Helmholtz()
        balancer = ReLoBRaLo(2, seed=0)
        kw = dict(n_interior=64, n_boundary=32, seed=0, jit_compile=False)
        return Trainer(tiny(pde), pde, balancer, **kw)

    by_hand, looped = trainer(), trainer()
    rows = [by_hand.train_step() for _ in range(3)]
    assert all(isinstance(t, tf.Tensor) and t.shape == (2,) for row in rows for t in row)
    assert int(by_hand.step.numpy()) == 3 and len(by_hand.history.step) == 0
    h = looped.run(3, eval_points=16, progress=False)
    np.testing.assert_allclose([r[0].numpy() for r in rows], h.losses, rtol=1e-5)
    np.testing.assert_allclose([r[1].numpy() for r in rows], h.lambdas, rtol=1e-5)
    # run() continues a trainer stepped by hand.
    h = by_hand.run(5, eval_points=16, progress=False)
    np.testing.assert_array_equal(h.step, np.arange(3, 5))
    assert int(by_hand.step.numpy()) == 5


# -- repeatability and resuming -----------------------------------------------------------------
# Two seeded runs draw the same points and lookbacks, so their histories agree; on the CPU the
# gradients of the forward-mode derivatives are not always bitwise reproducible (a last-bit
# difference now and then, TensorFlow's doing), so trajectories are compared to float32 rounding
# and the random streams exactly. A different seed changes the losses by far more.
CLOSE = dict(rtol=1e-5, atol=1e-7)


@pytest.fixture
def helmholtz_trainer(tiny):
    def make(chunk=100, mseed=0, bseed=0, seed=0):
        pde = Helmholtz()
        balancer = ReLoBRaLo(2, rho=0.5, alpha=0.9, temperature=1.0, seed=bseed)
        return Trainer(
            tiny(pde, seed=mseed),
            pde,
            balancer,
            n_interior=64,
            n_boundary=32,
            seed=seed,
            jit_compile=False,
            chunk=chunk,
        )

    return make


def run(trainer, steps, **kw):
    return trainer.run(steps, eval_points=16, progress=False, **kw)


def assert_same_state(a, b):
    np.testing.assert_array_equal(a.generator.state.numpy(), b.generator.state.numpy())
    np.testing.assert_array_equal(
        a.balancer.generator.state.numpy(), b.balancer.generator.state.numpy()
    )
    assert int(a.step.numpy()) == int(b.step.numpy()) == int(a.balancer.step.numpy())
    np.testing.assert_allclose(a.balancer.lambdas.numpy(), b.balancer.lambdas.numpy(), **CLOSE)
    for wa, wb in zip(a.model.get_weights(), b.model.get_weights()):
        np.testing.assert_allclose(wa, wb, **CLOSE)
    # Adam's moments accumulate every step's gradient, so those last-bit differences add up in
    # them (one element off by 1.7e-5 relative after 25 steps was seen): a looser tolerance.
    for va, vb in zip(a.optimizer.variables, b.optimizer.variables):
        np.testing.assert_allclose(np.asarray(va), np.asarray(vb), rtol=1e-4, atol=1e-6)


def test_same_seeds_same_history(helmholtz_trainer):
    ta, tb = helmholtz_trainer(), helmholtz_trainer(chunk=7)
    tc = helmholtz_trainer(seed=1)
    a, b, c = run(ta, 25), run(tb, 25), run(tc, 25)  # chunking only changes the read-backs
    np.testing.assert_allclose(a.losses, b.losses, **CLOSE)
    np.testing.assert_allclose(a.lambdas, b.lambdas, **CLOSE)
    assert_same_state(ta, tb)
    # Another sampling seed: other points, losses that differ by far more than rounding.
    assert np.max(np.abs(a.losses[:, 0] / c.losses[:, 0] - 1)) > 1e-2


def test_checkpoint_resume_matches_an_uninterrupted_run(tmp_path, helmholtz_trainer):
    n = 12
    full_trainer = helmholtz_trainer()
    full = run(full_trainer, 2 * n)
    half = run(helmholtz_trainer(), n, checkpoint_dir=tmp_path, checkpoint_every=n)
    assert (tmp_path / "history.npz").exists()
    # Fresh model, balancer and sampler with other seeds: everything must come from the checkpoint.
    trainer = helmholtz_trainer(mseed=9, bseed=9, seed=9)
    resumed = run(trainer, 2 * n, checkpoint_dir=tmp_path, checkpoint_every=n)
    np.testing.assert_array_equal(resumed.step, np.arange(2 * n))
    np.testing.assert_array_equal(resumed.losses[:n], half.losses)  # the saved history
    np.testing.assert_allclose(resumed.losses, full.losses, **CLOSE)
    np.testing.assert_allclose(resumed.lambdas, full.lambdas, **CLOSE)
    assert_same_state(trainer, full_trainer)
    assert resumed.eval_step[-1] == 2 * n and np.all(np.diff(resumed.eval_step) > 0)


def test_checkpoint_dir_without_checkpoint_every(tmp_path, helmholtz_trainer):
    # checkpoint_every is documented to default to 1000 steps (and a save at the end).
    h = run(helmholtz_trainer(), 3, checkpoint_dir=tmp_path)
    assert len(h.step) == 3
    assert tf.train.latest_checkpoint(str(tmp_path)) is not None
    assert (tmp_path / "history.npz").exists()


def test_checkpoint_of_other_runs_is_refused(tmp_path, helmholtz_trainer, tiny):
    run(helmholtz_trainer(), 2, checkpoint_dir=tmp_path)
    other = Trainer(pinnlib.mlp(2, 3, 8, seed=0), Helmholtz(), jit_compile=False)  # other sizes
    with pytest.raises(ValueError, match="belongs to other runs"):
        run(other, 4, checkpoint_dir=tmp_path)


def test_history_record_save_load_truncate(tmp_path, helmholtz_trainer):
    h = run(helmholtz_trainer(), 10, eval_every=5)
    h.save(tmp_path / "h.npz")
    back = History.load(tmp_path / "h.npz")
    assert back.term_names == h.term_names and back.info == h.info
    for k in ("step", "losses", "lambdas", "total", "eval_step", "rel_l2", "mse", "time"):
        np.testing.assert_array_equal(getattr(back, k), getattr(h, k))
    cut = h.truncate(5)
    np.testing.assert_array_equal(cut.step, np.arange(5))
    np.testing.assert_array_equal(cut.eval_step, [0, 5])
    np.testing.assert_array_equal(cut.lambdas, h.lambdas[:5])
    np.testing.assert_array_equal(h.term("L_b"), h.losses[:, 1])
    # The public recording methods: rows continue the step count, the total is the weighted sum.
    cut.extend(5, [[2.0, 3.0], [4.0, 5.0]], [[1.0, 0.5], [0.5, 1.0]])
    np.testing.assert_array_equal(cut.step, np.arange(7))
    np.testing.assert_array_equal(cut.total[-2:], [3.5, 7.0])
    cut.record_evaluation(7, 0.25, 0.125, 1.5)
    assert (cut.eval_step[-1], cut.final_error, cut.mse[-1], cut.time[-1]) == (7, 0.25, 0.125, 1.5)


# -- a loss that turns non-finite stops the run ---------------------------------------------------
def test_non_finite_loss_stops_before_the_step(tiny, small, blows_up):
    bad = 7
    pde = blows_up(bad)
    model = tiny(pde)
    balancer = ReLoBRaLo(2, seed=0)
    trainer = Trainer(
        model, pde, balancer, n_interior=64, n_boundary=32, seed=0, jit_compile=False, chunk=5
    )
    with pytest.raises(FloatingPointError, match=rf"'L_b'.*inf.*step {bad}") as info:
        trainer.run(20, eval_points=16, progress=False)
    error = info.value
    assert isinstance(error, NonFiniteLossError)
    assert (error.term, error.step, error.run, error.value) == ("L_b", bad, None, np.inf)
    h = error.history
    assert h is trainer.history and error.histories == [h]
    np.testing.assert_array_equal(h.step, np.arange(bad))
    assert (
        h.losses.shape == (bad, 2)
        and np.all(np.isfinite(h.losses))
        and np.all(np.isfinite(h.lambdas))
    )
    # Neither the optimizer nor the balancer saw the bad step.
    assert int(trainer.step.numpy()) == bad and int(balancer.step.numpy()) == bad
    weights = model.get_weights()
    assert all(np.all(np.isfinite(w)) for w in weights)
    clean_model = tiny(pde)
    clean = pinnlib.train(
        clean_model, Helmholtz(), ReLoBRaLo(2, seed=0), steps=bad, seed=0, **small
    )
    np.testing.assert_allclose(h.losses, clean.losses, rtol=1e-5)
    for w, c in zip(weights, clean_model.get_weights()):
        np.testing.assert_allclose(w, c, rtol=1e-5, atol=1e-7)


# -- dtypes, XLA, other balancers, other optimizers ----------------------------------------------
def test_float64_end_to_end(tiny):
    pde = Poisson1D()
    model = tiny(pde, dtype="float64")
    balancer = ReLoBRaLo(2, seed=0, dtype="float64")
    trainer = Trainer(
        model,
        pde,
        balancer,
        n_interior=32,
        n_boundary=2,
        seed=0,
        learning_rate=1e-2,
        jit_compile=False,
    )
    assert trainer.dtype == tf.float64
    h = trainer.run(60, eval_points=16, progress=False)
    assert h.losses[-10:].sum(axis=1).mean() < 0.5 * h.losses[:10].sum(axis=1).mean()
    assert balancer.lambdas.dtype == tf.float64
    assert all(v.dtype == tf.float64 for v in model.trainable_variables)
    np.testing.assert_allclose(h.lambdas.sum(axis=1), 2.0, rtol=1e-12)
    # In float64 the compiled evaluation agrees with the eager metric closely.
    assert h.final_error == pytest.approx(pinnlib.relative_l2_error(model, pde, n=16), rel=1e-9)


def test_float64_functional_model_trains():
    """Any Keras model with one output trains (through tapes), here a float64 functional one."""
    inputs = keras.Input((1,), dtype="float64")
    hidden = keras.layers.Dense(8, activation="tanh", dtype="float64")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1, dtype="float64")(hidden))
    pde = Poisson1D()
    trainer = Trainer(model, pde, n_interior=16, n_boundary=2, seed=0, jit_compile=False)
    assert trainer.dtype == tf.float64
    h = trainer.run(5, eval_points=8, progress=False)
    assert h.losses.shape == (5, 2) and np.all(np.isfinite(h.losses))


def test_jit_compile_run(tiny, small):
    pde = Poisson1D()
    runs = []
    for jit in (True, False):
        model = tiny(pde, seed=5)
        kw = {**small, "jit_compile": jit}
        h = pinnlib.train(
            model, pde, ReLoBRaLo(2, seed=1), steps=40, learning_rate=1e-2, seed=2, **kw
        )
        assert h.info["jit_compile"] is jit
        runs.append(h)
    xla, plain = runs
    assert np.all(np.isfinite(xla.losses)) and np.all(np.isfinite(xla.lambdas))
    unweighted = xla.losses.sum(axis=1)
    assert unweighted[-5:].mean() < unweighted[:5].mean()
    # The boundary points of Poisson1D are fixed, so the first L_b is the same compiled or not.
    # (The interior points differ: tf.random.Generator draws another stream under XLA.)
    assert xla.losses[0, 1] == pytest.approx(plain.losses[0, 1], rel=1e-5)
    np.testing.assert_allclose(xla.lambdas.sum(axis=1), 2.0, rtol=1e-5)


@pytest.mark.parametrize(
    "balancer",
    [LRAnnealing(2, update_every=5), GradNorm(2), SoftAdapt(2)],
    ids=["lr-annealing", "gradnorm", "softadapt"],
)
def test_other_balancers_train(balancer, tiny, small):
    pde = Poisson1D()
    model = tiny(pde, seed=1)
    h = pinnlib.train(model, pde, balancer, steps=60, learning_rate=1e-2, seed=0, **small)
    unweighted = h.losses.sum(axis=1)
    assert unweighted[-10:].mean() < unweighted[:10].mean()
    assert np.all(np.isfinite(h.lambdas)) and np.all(h.lambdas > 0)
    assert not np.allclose(h.lambdas, h.lambdas[0])  # the weights did adapt
    np.testing.assert_array_equal(h.lambdas[-1], balancer.lambdas.numpy())


def test_sgd_step_by_hand(tiny, small):
    """With plain SGD the first update is w - lr * grad(L_f + L_b): checked against a tape."""
    pde = Poisson1D()
    model, lr = tiny(pde, seed=4), 0.05
    points = pde.sample(64, 2, tf.random.Generator.from_seed(0))
    with tf.GradientTape() as tape:
        total = tf.add_n(pde.losses(model, points))
    expected = [
        w - lr * g.numpy()
        for w, g in zip(model.get_weights(), tape.gradient(total, model.trainable_variables))
    ]
    small["n_boundary"] = 2
    pinnlib.train(model, pde, steps=1, seed=0, optimizer=keras.optimizers.SGD(lr), **small)
    for w, e in zip(model.get_weights(), expected):
        np.testing.assert_allclose(w, e, rtol=1e-5, atol=1e-7)


# -- the Keras path ------------------------------------------------------------------------------
def fit_poisson(model_fn, balancer, epochs=2, steps=10, pde=None):
    pde = pde or Poisson1D()
    model = pinnlib.PINNModel(
        model_fn(pde, seed=2), pde, balancer, n_interior=64, n_boundary=8, seed=0
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False)
    batches = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: batches.append(
            {k: float(v) for k, v in logs.items()}
        )
    )
    history = model.fit(epochs=epochs, steps_per_epoch=steps, verbose=0, callbacks=[record])
    return model, history, batches


def test_pinn_model_fit_logs_terms_and_weights(tiny):
    model, history, batches = fit_poisson(tiny, ReLoBRaLo(2, seed=0))
    assert len(batches) == 20
    keys = {"loss", "L_f", "L_b", "lambda_L_f", "lambda_L_b"}
    assert keys <= set(history.history) and keys <= set(batches[0])
    assert len(history.history["loss"]) == 2
    for logs in batches:
        lam = np.array([logs["lambda_L_f"], logs["lambda_L_b"]])
        assert lam.sum() == pytest.approx(2.0, rel=1e-5)
        assert logs["loss"] == pytest.approx(lam @ [logs["L_f"], logs["L_b"]], rel=1e-5)
    unweighted = np.array([b["L_f"] + b["L_b"] for b in batches])
    assert unweighted[10:].mean() < unweighted[:10].mean()
    assert int(model.balancer.step.numpy()) == 20 == int(model.applied_steps.numpy())
    np.testing.assert_array_equal(
        model(tf.constant([[0.5]])).numpy(), model.network(tf.constant([[0.5]])).numpy()
    )


def test_pinn_model_fit_with_a_gradient_balancer(tiny):
    _, _, batches = fit_poisson(tiny, LRAnnealing(2, update_every=2), epochs=1, steps=4)
    assert len(batches) == 4 and all(np.isfinite(b["loss"]) for b in batches)


def test_pinn_model_stops_on_a_non_finite_loss(tiny, blows_up):
    bad = 3
    pde = blows_up(bad)
    with pytest.raises(NonFiniteLossError, match=rf"'L_b'.*inf.*step {bad}") as info:
        fit_poisson(tiny, ReLoBRaLo(2, seed=0), epochs=1, steps=10, pde=pde)
    assert info.value.step == bad and info.value.term == "L_b"


def test_pinn_model_validation(tiny):
    pde = Poisson1D()
    with pytest.raises(ValueError, match="terms"):
        pinnlib.PINNModel(tiny(pde), pde, ReLoBRaLo(3))
    with pytest.raises(ValueError, match="n_interior"):
        pinnlib.PINNModel(tiny(pde), pde, n_interior=0)
    model = pinnlib.PINNModel(tiny(pde), pde)
    model.compile(optimizer="adam")
    with pytest.raises(ValueError, match="steps_per_epoch"):
        model.fit(epochs=1)


# -- the budget switch -----------------------------------------------------------------------------
def test_budget(monkeypatch):
    monkeypatch.delenv("PINNLIB_BUDGET", raising=False)
    assert pinnlib.budget_name() == "full"
    assert pinnlib.budget(10_000) == 10_000 and pinnlib.budget(0.5, 0.1) == 0.5
    monkeypatch.setenv("PINNLIB_BUDGET", "full")
    assert pinnlib.budget(10_000, 7) == 10_000
    monkeypatch.setenv("PINNLIB_BUDGET", " Smoke ")
    assert pinnlib.budget_name() == "smoke"
    assert pinnlib.budget(10_000) == 100 and pinnlib.budget(5) == 1
    assert pinnlib.budget(0.5, 0.1) == 0.1 and pinnlib.budget(10_000, 7) == 7
    with pytest.raises(TypeError, match="smoke"):
        pinnlib.budget(0.5)
    monkeypatch.setenv("PINNLIB_BUDGET", "")
    assert pinnlib.budget_name() == "full"
    monkeypatch.setenv("PINNLIB_BUDGET", "fast")
    with pytest.raises(ValueError, match="PINNLIB_BUDGET"):
        pinnlib.budget_name()
    with pytest.raises(ValueError, match="PINNLIB_BUDGET"):
        pinnlib.budget(100)


@pytest.mark.parametrize("budget", ["smoke", "full", "bogus"])
def test_the_library_does_not_read_the_budget(monkeypatch, budget, tiny):
    # XLA is the library's default whatever PINNLIB_BUDGET says; notebooks choose explicitly.
    pde = Poisson1D()
    monkeypatch.setenv("PINNLIB_BUDGET", budget)
    assert Trainer(tiny(pde), pde).jit_compile is True
    assert Trainer(tiny(pde), pde, jit_compile=False).jit_compile is False
    with pytest.raises(TypeError, match=r"jit_compile.*pinnlib\.budget\(True, False\)"):
        Trainer(tiny(pde), pde, jit_compile=None)


def test_interrupt_returns_the_history_so_far():
    # A Ctrl-C / notebook interrupt during training stops after the current chunk and returns
    # what was recorded, with a warning, instead of losing the run.
    import os
    import signal
    import threading

    model = pinnlib.mlp(2, 2, 16, seed=0)
    trainer = pinnlib.Trainer(
        model,
        pinnlib.Helmholtz(),
        n_interior=64,
        n_boundary=32,
        seed=0,
        jit_compile=False,
        chunk=10,
    )
    trainer.run(10, progress=False)  # trace first, so the interrupt lands during training
    timer = threading.Timer(0.5, os.kill, args=(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.warns(UserWarning, match="interrupted at step"):
            history = trainer.run(10**6, progress=False, eval_every=10**6)
    finally:
        timer.cancel()
    done = int(trainer.step.numpy())
    assert 10 < done < 10**6
    assert len(history.step) == done
    assert history.step[-1] == done - 1
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# -- the progress bar -------------------------------------------------------------------------
def test_progress_bar_is_text_on_stdout_and_dates_its_error(tiny, small, capsys):
    # Without ipywidgets (as under `make execute`) the bar is text on stdout, not an stderr box
    # in the rendered book, and the error it shows names the step it was measured at.
    pde = Helmholtz()
    kw = {**small, "progress": True}
    pinnlib.train(tiny(pde), pde, steps=30, eval_every=20, chunk=10, seed=0, **kw)
    out, err = capsys.readouterr()
    final = out.split("\r")[-1]
    assert "30/30" in final and "rel_l2=" in final
    # The last evaluation is at the end (step 30); one line earlier the error was from step 20.
    assert final.rstrip().endswith("at step 30]")
    assert any(line.rstrip().endswith("at step 20]") for line in out.split("\r"))
    assert "30/30" not in err
