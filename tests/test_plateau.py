"""ReduceOnPlateau: the learning rate ×factor after a plateau of evaluations, and a stop after
the last allowed reduction, as Bischof & Kraus (arXiv 2110.09813) trained (issue #23).

The facts checked: the rule against a plain re-derivation over a sequence of errors (golden
rates and stop); inside ``pinnlib.train`` the rate recorded at each evaluation and the stopping
step follow from the rule; a run interrupted and resumed from its checkpoint equals the
uninterrupted one (losses, rates, plateau state) bit for bit; a stopped run stays stopped on a
resume; a schedule, ``train_together`` and another folder's plateau are refused by name; under a
``tf.distribute`` strategy the plateau (and a schedule) give the one-device rates.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import pinnlib
from pinnlib import Poisson1D, ReduceOnPlateau, ReLoBRaLo

HERE = Path(__file__).resolve().parent


def rule(values, rate, factor, patience, min_delta, max_reductions):
    """The plateau rule written out plainly: the rate after each value, and the stop index."""
    best, wait, reductions, rates = np.inf, 0, 0, []
    for i, v in enumerate(values):
        if v < best - min_delta:
            best, wait = v, 0
        else:
            wait += 1
            if wait >= patience:
                if reductions == max_reductions:
                    return rates, i
                rate, reductions, wait = rate * factor, reductions + 1, 0
        rates.append(rate)
    return rates, None


def test_the_rule_against_a_plain_rederivation():
    values = [5.0, 4.0, 4.5, 3.99, 4.2, 4.1, 4.3, 1.0, 1.2, 1.1, 1.3, 1.4, 1.5, 1.6]
    settings = dict(factor=0.5, patience=2, min_delta=0.05, max_reductions=2)
    variable = keras.Variable(np.ones(2, np.float32))
    optimizer = keras.optimizers.SGD(0.8)
    optimizer.build([variable])
    plateau = ReduceOnPlateau(**settings)
    want, stop_at = rule(values, 0.8, **settings)
    got = []
    for i, v in enumerate(values):
        if plateau.update(v, optimizer):
            assert i == stop_at
            break
        got.append(float(tf.convert_to_tensor(optimizer.learning_rate).numpy()))
    np.testing.assert_allclose(got, want, rtol=1e-7)
    # by hand: 3.99 does not beat 4.0 by more than min_delta, so the second miss (i = 3) halves
    # the rate; 4.1 (i = 5) halves it again; 1.0 is a new best; 1.2 and 1.1 miss: stop at i = 9
    np.testing.assert_allclose(want, [0.8, 0.8, 0.8, 0.4, 0.4, 0.2, 0.2, 0.2, 0.2])
    assert stop_at == 9 and int(plateau.reductions.numpy()) == 2
    assert plateau.update(0.0, optimizer)  # once stopped, always stopped


def poisson(folder=None, steps=40, plateau=None, **kwargs):
    pde = Poisson1D()
    return pinnlib.train(
        pinnlib.mlp(1, 1, 8, seed=0),
        pde,
        ReLoBRaLo(2, seed=0, rho=0.5),
        steps=steps,
        n_interior=16,
        n_boundary=4,
        seed=0,
        eval_every=5,
        eval_points=8,
        progress=False,
        jit_compile=False,
        checkpoint_dir=folder,
        plateau=plateau,
        **{"learning_rate": 1e-2, **kwargs},
    )


def never_improves(**kwargs):
    """After the first check nothing counts as an improvement: the schedule is known exactly."""
    return ReduceOnPlateau(factor=0.1, patience=1, min_delta=1e9, max_reductions=2, **kwargs)


def test_in_the_loop_rates_follow_the_rule_and_the_run_stops():
    h = poisson(steps=100, plateau=never_improves())
    # checks at 5 (best), 10 (×0.1), 15 (×0.01), 20 (stop); the evaluation at 0 is no check
    np.testing.assert_array_equal(h.eval_step, [0, 5, 10, 15, 20])
    np.testing.assert_allclose(h.learning_rate, [1e-2, 1e-2, 1e-3, 1e-4, 1e-4], rtol=1e-6)
    assert h.info["stopped_by_plateau"] == 20 and h.info["steps"] == 20
    assert h.info["plateau_reductions"] == 2 and h.step.size == 20


def test_without_stop_the_run_goes_on_at_the_lowest_rate():
    h = poisson(steps=30, plateau=never_improves(stop=False))
    assert h.step.size == 30 and "stopped_by_plateau" not in h.info
    np.testing.assert_allclose(h.learning_rate[-1], 1e-4, rtol=1e-6)


def test_resume_with_a_plateau_is_exact(tmp_path):
    settings = dict(factor=0.5, patience=1, min_delta=0.0, max_reductions=5, monitor="rel_l2")
    whole = poisson(steps=60, plateau=ReduceOnPlateau(**settings))
    poisson(tmp_path, steps=30, plateau=ReduceOnPlateau(**settings), checkpoint_every=10)
    fresh = ReduceOnPlateau(**settings)
    resumed = poisson(tmp_path, steps=60, plateau=fresh, checkpoint_every=10)
    for key in ("losses", "lambdas", "eval_step", "rel_l2", "learning_rate"):
        np.testing.assert_array_equal(getattr(resumed, key), getattr(whole, key), err_msg=key)
    assert resumed.info.get("stopped_by_plateau") == whole.info.get("stopped_by_plateau")
    assert resumed.info["plateau_reductions"] == whole.info["plateau_reductions"]
    assert len(set(whole.learning_rate)) > 1  # the rate was lowered along the way


def test_a_stopped_run_stays_stopped_on_a_resume(tmp_path, capsys):
    poisson(tmp_path, steps=100, plateau=never_improves(), checkpoint_every=50)
    again = poisson(tmp_path, steps=100, plateau=never_improves(), checkpoint_every=50)
    assert "resumed from step 20" in capsys.readouterr().out
    assert again.step.size == 20 and again.info["stopped_by_plateau"] == 20


def test_refusals_name_the_problem(tmp_path):
    schedule = keras.optimizers.schedules.ExponentialDecay(1e-2, 10, 0.9)
    with pytest.raises(ValueError, match="LearningRateSchedule"):
        poisson(steps=5, plateau=ReduceOnPlateau(), learning_rate=schedule)
    with pytest.raises(TypeError, match="plateau must be a pinnlib.ReduceOnPlateau"):
        poisson(steps=5, plateau="yes")
    models = [pinnlib.mlp(1, 1, 8, seed=s) for s in (0, 1)]
    with pytest.raises(ValueError, match="train_together does not take plateau="):
        pinnlib.train_together(models, Poisson1D(), steps=5, plateau=ReduceOnPlateau())
    for bad in (dict(factor=1.0), dict(factor=0.0), dict(patience=0), dict(min_delta=-1.0)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            ReduceOnPlateau(**bad)
    with pytest.raises(ValueError, match="monitor"):
        ReduceOnPlateau(monitor="loss")
    poisson(tmp_path, steps=10, checkpoint_every=5)
    with pytest.raises(ValueError, match="its plateau= is None, this call's is"):
        poisson(tmp_path, steps=20, plateau=ReduceOnPlateau(), checkpoint_every=5)


SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import pinnlib

    def run(strategy, plateau, learning_rate):
        scope = strategy.scope() if strategy else tf.name_scope("one")
        with scope:
            model = pinnlib.mlp(1, 1, 8, seed=0)
            p = pinnlib.ReduceOnPlateau(patience=1, min_delta=1e9, max_reductions=1) if plateau else None
        return pinnlib.train(model, pinnlib.Poisson1D(), steps=30, n_interior=16, n_boundary=4,
            seed=0, learning_rate=learning_rate, eval_every=5, eval_points=8, progress=False,
            jit_compile=False, strategy=strategy, plateau=p)

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    schedule = keras.optimizers.schedules.ExponentialDecay(1e-2, 10, 0.9)
    out = {}
    for name, plateau, rate in (("plateau", True, 1e-2), ("schedule", False, schedule)):
        one, two = run(None, plateau, rate), run(strategy, plateau, rate)
        out[name + "_one"], out[name + "_two"] = one.learning_rate, two.learning_rate
        out[name + "_steps"] = np.array([one.step.size, two.step.size])
    with strategy.scope():
        model = pinnlib.mlp(1, 1, 8, seed=0)
    t = pinnlib.Trainer(model, pinnlib.Poisson1D(), n_interior=16, n_boundary=4, seed=0,
                        jit_compile=False, strategy=strategy)
    try:
        t.lbfgs(3)
    except ValueError as error:
        out["lbfgs_refused"] = np.array(str(error))
    np.savez(sys.argv[1], **out)
    """
)


def test_under_a_strategy_the_rates_are_the_one_device_rates(tmp_path):
    script, out = tmp_path / "scenario.py", tmp_path / "out.npz"
    script.write_text(SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(HERE.parent), TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(
        [sys.executable, str(script), str(out)], env=env, capture_output=True, timeout=600
    )
    assert done.returncode == 0, done.stdout.decode()[-3000:] + done.stderr.decode()[-3000:]
    with np.load(out) as data:
        np.testing.assert_array_equal(data["plateau_two"], data["plateau_one"])
        np.testing.assert_allclose(data["plateau_one"][-1], 1e-3, rtol=1e-6)
        np.testing.assert_array_equal(data["plateau_steps"], [15, 15])  # checks 5, 10 (×0.1), 15
        np.testing.assert_array_equal(data["schedule_two"], data["schedule_one"])
        assert "tf.distribute strategy" in str(data["lbfgs_refused"])
