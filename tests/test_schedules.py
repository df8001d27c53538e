"""Learning-rate schedules through every front end (issue #23).

Wang et al. (arXiv 2001.04536) trained every published run with Adam at 1e-3 · 0.9^(step/1000).
The facts checked: a Keras ``ExponentialDecay`` passed as ``learning_rate`` is evaluated at the
step index exactly as that formula (computed here in NumPy, and applied by hand step by step to
an SGD run that must match the scheduled one); a run interrupted and resumed from its
checkpoint equals the uninterrupted run bit for bit, rate included; ``train_together``
(grouped and stacked) and ``PINNModel.fit`` with its Keras file take a schedule too; the
History records the rate at each evaluation and keeps it (and ``phases``) through save/load,
while older files still load.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import pinnlib
from pinnlib import History, Poisson1D, ReLoBRaLo, Sum


def decay(rate=1e-2, every=10, base=0.9):
    """Wang et al.'s exponential decay (not staircase), scaled to a short test run."""
    return keras.optimizers.schedules.ExponentialDecay(rate, every, base)


def wang(k, rate=1e-2, every=10, base=0.9):
    return rate * base ** (np.asarray(k, np.float64) / every)


def poisson(folder=None, steps=40, seed=0, **kwargs):
    pde = Poisson1D()
    kwargs.setdefault("learning_rate", decay())
    return pinnlib.train(
        pinnlib.mlp(1, 1, 8, seed=seed),
        pde,
        ReLoBRaLo(2, seed=seed, rho=0.5),
        steps=steps,
        n_interior=16,
        n_boundary=4,
        seed=seed,
        eval_every=5,
        eval_points=8,
        progress=False,
        jit_compile=False,
        checkpoint_dir=folder,
        **kwargs,
    )


def test_the_rate_at_step_k_is_wangs_formula():
    """The published values: 1e-3 · 0.9^(k/1000) at several k, in float32."""
    variable = keras.Variable(np.ones(3, np.float32))
    optimizer = keras.optimizers.Adam(decay(1e-3, 1000, 0.9))
    optimizer.build([variable])
    for k in (0, 1, 999, 1000, 2500, 40_000):
        optimizer.iterations.assign(k)
        got = float(tf.convert_to_tensor(optimizer.learning_rate).numpy())
        # float32 evaluation: k/1000 · log 0.9 carries a relative rounding that grows with k
        np.testing.assert_allclose(got, 1e-3 * 0.9 ** (k / 1000), rtol=1e-5)


def test_a_scheduled_run_equals_the_formula_applied_by_hand():
    """SGD with the schedule equals SGD whose rate is set to the NumPy formula before each step."""
    pde = Poisson1D()
    common = dict(n_interior=16, n_boundary=4, seed=3, jit_compile=False)
    scheduled = pinnlib.Trainer(
        pinnlib.mlp(1, 1, 8, seed=1), pde, Sum(2), optimizer=keras.optimizers.SGD(decay()), **common
    )
    by_hand = pinnlib.Trainer(
        pinnlib.mlp(1, 1, 8, seed=1), pde, Sum(2), optimizer=keras.optimizers.SGD(1.0), **common
    )
    for k in range(25):
        scheduled.train_step()
        by_hand.optimizer.learning_rate = float(wang(k))
        by_hand.train_step()
    for a, b in zip(scheduled.model.get_weights(), by_hand.model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)
    # and the rate really moved: a constant rate would have ended elsewhere
    assert not np.allclose(wang(24), wang(0))


def test_resume_with_a_schedule_is_exact(tmp_path):
    whole = poisson(steps=40)
    poisson(tmp_path, steps=20, checkpoint_every=10)
    resumed = poisson(tmp_path, steps=40, checkpoint_every=10)
    for key in ("losses", "lambdas", "eval_step", "rel_l2", "learning_rate"):
        np.testing.assert_array_equal(getattr(resumed, key), getattr(whole, key), err_msg=key)
    np.testing.assert_allclose(whole.learning_rate, wang(whole.eval_step), rtol=1e-6)


def test_a_constant_rate_is_recorded_too():
    h = poisson(steps=10, learning_rate=3e-3)
    np.testing.assert_allclose(h.learning_rate, 3e-3, rtol=1e-7)
    assert h.learning_rate.shape == h.eval_step.shape


@pytest.mark.parametrize("stacked", [False, True], ids=["grouped", "stacked"])
def test_train_together_takes_a_schedule(stacked):
    pde = Poisson1D()
    models = [pinnlib.mlp(1, 1, 8, seed=s) for s in (0, 1)]
    options = dict(n_interior=16, n_boundary=4, eval_every=5, eval_points=8, progress=False)
    options.update(jit_compile=False, learning_rate=decay())
    together = pinnlib.train_together(
        models, pde, steps=20, seeds=[0, 1], stacked=stacked, **options
    )
    for s, h in enumerate(together):
        alone = pinnlib.train(pinnlib.mlp(1, 1, 8, seed=s), pde, steps=20, seed=s, **options)
        np.testing.assert_allclose(h.losses, alone.losses, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(h.learning_rate, wang(h.eval_step), rtol=1e-6)


def test_pinnmodel_fit_with_a_schedule_resumes_from_a_keras_file(tmp_path):
    def make(seed):
        network = pinnlib.mlp(1, 1, 8, seed=seed)
        model = pinnlib.PINNModel(network, Poisson1D(), Sum(2), n_interior=16, n_boundary=2, seed=0)
        model.compile(optimizer=keras.optimizers.Adam(decay()), jit_compile=False)
        return model

    reference = make(0)
    reference.fit(epochs=2, steps_per_epoch=6, verbose=0)
    first = make(0)
    first.fit(epochs=1, steps_per_epoch=6, verbose=0)
    first.save(tmp_path / "run.keras")
    restored = keras.models.load_model(tmp_path / "run.keras")
    assert isinstance(
        restored.optimizer._learning_rate, keras.optimizers.schedules.ExponentialDecay
    )
    restored.fit(epochs=1, steps_per_epoch=6, verbose=0)
    for a, b in zip(restored.network.get_weights(), reference.network.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    rate = float(tf.convert_to_tensor(restored.optimizer.learning_rate).numpy())
    np.testing.assert_allclose(rate, wang(12), rtol=1e-6)


def test_bad_learning_rates_are_refused():
    with pytest.raises(TypeError, match="learning_rate must be a number or a keras"):
        poisson(steps=1, learning_rate="fast")
    with pytest.raises(ValueError, match="learning_rate must be a finite number > 0"):
        poisson(steps=1, learning_rate=-1.0)


def test_history_keeps_rates_and_phases_and_old_files_load(tmp_path):
    h = History(("L_f", "L_b"))
    h.extend(0, [[1.0, 2.0]] * 3, [[1.0, 1.0]] * 3)
    h.record_evaluation(0, 0.5, 0.25, 0.0, 1e-3)
    h.record_evaluation(3, 0.4, 0.2, 1.0)  # no rate known: NaN
    h.start_phase("lbfgs", 3)
    h.save(tmp_path / "new.npz")
    back = History.load(tmp_path / "new.npz")
    np.testing.assert_array_equal(back.learning_rate, [1e-3, np.nan])
    assert back.phases == [{"name": "adam", "step": 0}, {"name": "lbfgs", "step": 3}]
    assert back.truncate(2).phases == [{"name": "adam", "step": 0}]
    # a file of pinnlib 0.2: no learning_rate, no phases
    old = {k: getattr(h, k) for k in ("step", "losses", "lambdas", "total", "eval_step")}
    old.update(rel_l2=h.rel_l2, mse=h.mse, time=h.time)
    np.savez(tmp_path / "old.npz", term_names=np.array(h.term_names), info="{}", **old)
    back = History.load(tmp_path / "old.npz")
    assert back.phases == [] and back.learning_rate.shape == (2,)
    assert np.all(np.isnan(back.learning_rate))
    np.testing.assert_array_equal(back.rel_l2, h.rel_l2)


def test_a_history_copied_without_rates_still_loads_and_truncates(tmp_path):
    """A copy that sets the evaluation arrays but not the rates (as a hand-made thinning would)."""
    h = History(("L_f", "L_b"))
    h.extend(0, [[1.0, 2.0]] * 3, [[1.0, 1.0]] * 3)
    h.eval_step, h.rel_l2, h.mse, h.time = np.array([0, 3]), np.ones(2), np.ones(2), np.zeros(2)
    h.save(tmp_path / "copy.npz")
    back = History.load(tmp_path / "copy.npz")
    assert back.learning_rate.shape == (2,) and np.all(np.isnan(back.learning_rate))
    np.testing.assert_array_equal(h.truncate(2).eval_step, [0])
