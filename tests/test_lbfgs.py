"""L-BFGS fine-tuning (pinnlib.lbfgs, Trainer.lbfgs; issue #23).

The facts checked: on a model that is linear in its weights (u = a + b·x + c·x²) the weighted
loss is a convex quadratic whose minimiser has a closed form on the fixed points (c = −mean of
the source / 2, a = 0, b = −c), which L-BFGS must find, with the points re-drawn here from a
generator of the same seed; the gradient handed to SciPy equals a finite-difference one; the
total loss never rises from one iteration to the next (the line search's sufficient decrease);
the history continues the Adam phase (step numbers, ``phases``, the first row equal to the
losses of the Adam model on the fixed points, the last error equal to ``pinnlib.evaluate``);
what cannot work is refused by name.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import scipy.optimize
import tensorflow as tf

import pinnlib
from pinnlib import Fixed, Helmholtz, Poisson1D, ReLoBRaLo, Sum
from pinnlib.training.lbfgs import _Objective
from pinnlib.training.runs import Run


def quadratic_model():
    """u(x) = a + b·x + c·x², float64: the loss is quadratic in (a, b, c)."""
    x = keras.Input((1,), dtype="float64")
    features = keras.layers.Lambda(lambda x: tf.concat([x, x * x], axis=1), dtype="float64")(x)
    return keras.Model(x, keras.layers.Dense(1, dtype="float64")(features))


def test_lbfgs_finds_the_closed_form_minimiser_on_the_fixed_points():
    pde, n = Poisson1D(), 50
    model = quadratic_model()
    h = pinnlib.lbfgs(
        model, pde, Fixed([1.0, 3.0]), iterations=60, n_interior=n, n_boundary=2, seed=7,
        eval_points=16, derivative_mode="tape", jit_compile=False,
    )  # fmt: skip
    x = pde.sample(n, 2, tf.random.Generator.from_seed(7), "float64")["interior"].numpy()
    source = np.pi**2 * np.sin(np.pi * x)  # u'' + π² sin(πx) = 2c + source
    c = -source.mean() / 2
    (w, bias) = model.get_weights()
    np.testing.assert_allclose([bias[0], w[0, 0], w[1, 0]], [0.0, -c, c], atol=1e-6)
    np.testing.assert_allclose(h.losses[-1, 0], np.mean((2 * c + source) ** 2), rtol=1e-6)
    np.testing.assert_array_equal(h.lambdas, np.tile([1.0, 3.0], (len(h.step), 1)))
    assert h.phases == [{"name": "lbfgs", "step": 0}] and h.step[0] == 0


def test_the_gradient_given_to_scipy_is_the_finite_difference_one(tiny):
    pde = Helmholtz()
    run = Run(tiny(pde, dtype="float64"), pde, ReLoBRaLo(2, dtype="float64"), None, 0, 32, 16)
    points = pde.sample(32, 16, run.generator, run.dtype)
    weights = tf.constant([0.3, 2.0], tf.float64)
    objective = _Objective(run, points, weights, jit_compile=False)
    x0 = objective.get()

    def value(x):
        return objective(x)[0]

    def gradient(x):
        return objective(x)[1]

    error = scipy.optimize.check_grad(value, gradient, x0, epsilon=1e-6)
    assert error < 1e-5 * np.linalg.norm(gradient(x0))


@pytest.fixture
def adam_then_lbfgs(tiny, small):
    pde = Helmholtz()
    trainer = pinnlib.Trainer(
        tiny(pde), pde, ReLoBRaLo(2, seed=0), n_interior=64, n_boundary=32, seed=0,
        learning_rate=1e-2, jit_compile=False,
    )  # fmt: skip
    trainer.run(40, eval_every=10, eval_points=16, progress=False)
    state = tf.random.Generator.from_state(
        trainer.generator.state.numpy(), trainer.generator.algorithm
    )  # a copy
    before = pde.losses(trainer.model, pde.sample(128, 64, state, "float32"))
    frozen = trainer.balancer.lambdas.numpy()
    h = trainer.lbfgs(25, n_interior=128, n_boundary=64, eval_every=10, eval_points=16)
    return trainer, h, np.array([float(b) for b in before]), frozen


def test_the_history_continues_the_adam_phase(adam_then_lbfgs):
    trainer, h, before, frozen = adam_then_lbfgs
    done = h.info["lbfgs"]["iterations"]
    assert 0 < done <= 25
    np.testing.assert_array_equal(h.step, np.arange(40 + done))
    assert h.phases == [{"name": "adam", "step": 0}, {"name": "lbfgs", "step": 40}]
    np.testing.assert_allclose(h.losses[40], before, rtol=1e-5)  # the fixed points, before moving
    np.testing.assert_allclose(h.lambdas[40:], np.tile(frozen, (done, 1)), rtol=1e-7)
    assert np.all(np.diff(h.total[40:]) <= 0)  # every accepted iterate lowers Σ λ L
    assert h.eval_step[-1] == 40 + done and 40 in h.eval_step
    assert np.all(np.isnan(h.learning_rate[h.eval_step > 40]))
    error = pinnlib.relative_l2_error(trainer.model, trainer.pde, 16)
    np.testing.assert_allclose(h.rel_l2[-1], error, rtol=1e-6)


def test_adam_after_lbfgs_is_refused(adam_then_lbfgs):
    trainer = adam_then_lbfgs[0]
    with pytest.raises(ValueError, match="build a new Trainer"):
        trainer.run(60, progress=False)


def test_refusals_name_the_problem(tiny):
    pde = Helmholtz()

    class Direction(Sum):
        returns_direction = True

    with pytest.raises(ValueError, match="returns an update direction"):
        pinnlib.lbfgs(tiny(pde), pde, Direction(2), 5, 32, 16, jit_compile=False)
    with pytest.raises(ValueError, match="iterations must be an integer >= 1"):
        pinnlib.lbfgs(tiny(pde), pde, None, 0, 32, 16, jit_compile=False)
    other = pinnlib.History(("L_f", "L_b", "L_c"))
    with pytest.raises(ValueError, match="loss terms"):
        pinnlib.lbfgs(tiny(pde), pde, None, 5, 32, 16, history=other, jit_compile=False)
    with pytest.raises(TypeError, match="history must be a pinnlib History"):
        pinnlib.lbfgs(tiny(pde), pde, None, 5, 32, 16, history={}, jit_compile=False)


def test_a_non_finite_loss_stops_with_the_last_iterate_kept(tiny, blows_up):
    pde = blows_up(bad_step=4)  # the fifth evaluation of the loss is infinite
    model = tiny(pde)
    with pytest.raises(pinnlib.NonFiniteLossError, match="'L_b' became inf") as caught:
        pinnlib.lbfgs(model, pde, None, 20, 32, 16, seed=0, eval_points=16, jit_compile=False)
    assert caught.value.history is not None and caught.value.history.phases
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())


def test_the_keras_path_fine_tunes_its_network():
    pde = Poisson1D()
    model = pinnlib.PINNModel(pinnlib.mlp(1, 1, 8, seed=0), pde, Sum(2), n_interior=16, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False)
    model.fit(epochs=1, steps_per_epoch=5, verbose=0)
    h = pinnlib.lbfgs(model.network, model.pde, model.balancer, 5, 16, 2, seed=0, jit_compile=False)
    assert h.total[-1] <= h.total[0]
    x = np.linspace(0, 1, 5)[:, None]
    np.testing.assert_array_equal(model.predict(x, verbose=0), model.network.predict(x, verbose=0))
