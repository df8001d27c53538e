"""TensorFlow's and Keras' own errors that reached users now come with the cause (issue 15).

Mixed float32/float64 loss terms (TensorFlow said "cannot compute Pack" or named an op), a
``keras.Sequential`` without an ``Input`` (the optimizer said "Unknown variable" inside the
compiled step) and float step counts (``steps=1e4``).
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import pinnlib
from pinnlib import Poisson1D, ReLoBRaLo

QUIET = dict(n_interior=16, n_boundary=2, eval_points=8, progress=False, jit_compile=False)


class MixedTerms(Poisson1D):
    """A PDE whose boundary term comes back in float64 while the model computes in float32."""

    def losses(self, model, points, mode="auto"):
        interior, edge = super().losses(model, points, mode)
        return [interior, tf.cast(edge, tf.float64)]


class Float32Source(Poisson1D):
    """A PDE whose source is a float32 constant: fine for a float32 model, not a float64 one."""

    def source(self, x):
        return tf.constant(-(np.pi**2), tf.float32) * tf.sin(np.pi * x)


def net(dtype="float32", seed=0):
    return pinnlib.mlp(1, 1, 8, seed=seed, dtype=dtype)


# -- mixed float32 / float64 --------------------------------------------------------------------
MIXED = r"the loss terms have different dtypes \('L_f': float32, 'L_b': float64\)"


def test_terms_of_different_dtypes_are_named_in_train():
    with pytest.raises(TypeError, match=MIXED):
        pinnlib.train(net(), MixedTerms(), steps=2, **QUIET)


@pytest.mark.parametrize("eager", [False, True], ids=["compiled", "run_eagerly"])
def test_terms_of_different_dtypes_are_named_in_fit(eager):
    # Run eagerly, TensorFlow's message was "cannot compute Pack as input #1 ...".
    model = pinnlib.PINNModel(net(), MixedTerms(), n_interior=16, n_boundary=2)
    model.compile(optimizer="adam", run_eagerly=eager, jit_compile=False)
    with pytest.raises(TypeError, match=MIXED):
        model.fit(epochs=1, steps_per_epoch=1, verbose=0)


def test_a_float32_constant_in_a_float64_model_is_explained():
    assert len(pinnlib.train(net(), Float32Source(), steps=2, **QUIET).step) == 2  # float32: fine
    with pytest.raises(TypeError, match=r"mixed float32 and float64 tensors .*dtype=points\.dtype"):
        pinnlib.train(net("float64"), Float32Source(), steps=2, **QUIET)


def test_a_balancer_called_with_terms_of_different_dtypes_names_them():
    balancer = ReLoBRaLo(2, seed=0)
    with pytest.raises(TypeError, match=r"ReLoBRaLo: .*\(term 0: float32, term 1: float64\)"):
        balancer([tf.constant(1.0), tf.constant(2.0, tf.float64)])
    assert int(balancer.step.numpy()) == 0


def test_float32_and_float64_networks_train_together_as_alone():
    pde, steps = Poisson1D(), 3
    alone = [
        pinnlib.train(net(d, s), pde, steps=steps, seed=s, **QUIET)
        for s, d in enumerate(("float32", "float64"))
    ]
    models = [net("float32", 0), net("float64", 1)]
    together = pinnlib.train_together(models, pde, steps=steps, seeds=[0, 1], **QUIET)
    for a, b in zip(alone, together):
        np.testing.assert_allclose(b.losses, a.losses, rtol=1e-5)
        np.testing.assert_allclose(b.lambdas, a.lambdas, rtol=1e-5)


# -- a model without an Input, a subclassed model ---------------------------------------------
def unbuilt():
    return keras.Sequential([keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(1)])


class Wrapped(keras.Model):
    """A user's own subclassed model around a built pinnlib.mlp (Keras calls it unbuilt)."""

    def __init__(self):
        super().__init__()
        self.inner = pinnlib.mlp(1, 1, 8, seed=0)

    def call(self, x):
        return 2.0 * self.inner(x)


class Empty(keras.Model):
    def call(self, x):
        return x


def test_unbuilt_and_subclassed_models_are_built_on_the_pde_shape_and_train():
    pde = Poisson1D()
    for make in (unbuilt, Wrapped):
        model = make()
        assert not model.built
        history = pinnlib.train(model, pde, steps=2, **QUIET)
        assert len(history.step) == 2 and np.all(np.isfinite(history.losses))
        # the weights that trained are the model's own (the first call built them)
        assert model.built and len(model.trainable_variables) >= 2
        hs = pinnlib.train_together([make(), make()], pde, steps=2, **QUIET)
        assert all(len(h.step) == 2 for h in hs)
        keras_model = pinnlib.PINNModel(make(), pde, n_interior=16, n_boundary=2)
        keras_model.compile(optimizer="adam", jit_compile=False)
        keras_model.fit(epochs=1, steps_per_epoch=2, verbose=0)
        assert keras_model.network.built


def test_a_model_with_no_weights_after_a_first_call_is_refused():
    with pytest.raises(ValueError, match=r"no weights to train even after a first call"):
        pinnlib.train(Empty(), Poisson1D(), steps=1, **QUIET)


# -- float counts ---------------------------------------------------------------------------------
def test_float_step_counts_say_use_an_integer():
    pde = Poisson1D()
    hint = r"must be an integer >= 0, got 10000.0 \(a float\); use an integer, e\.g\. 10_000"
    with pytest.raises(TypeError, match="steps " + hint):
        pinnlib.train(net(), pde, steps=1e4, **QUIET)
    trainer = pinnlib.Trainer(net(), pde, n_interior=16, n_boundary=2, jit_compile=False)
    with pytest.raises(TypeError, match="steps " + hint):
        trainer.run(1e4, progress=False)
    with pytest.raises(TypeError, match="steps " + hint):
        pinnlib.train_together([net()], pde, steps=1e4, **QUIET)
    model = pinnlib.PINNModel(net(), pde, n_interior=16, n_boundary=2)
    model.compile(optimizer="adam", jit_compile=False)
    with pytest.raises(TypeError, match=r"epochs must be an integer >= 0.*e\.g\. 10_000"):
        model.fit(epochs=1e4, steps_per_epoch=2)
    with pytest.raises(TypeError, match=r"steps_per_epoch must be an integer >= 1.*e\.g\. 100"):
        model.fit(epochs=1, steps_per_epoch=1e2)
