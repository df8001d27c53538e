"""Tests of pinnlib.nn's activation registry: forward mode recognises activations by identity.

A function that merely looks like a known activation (same name) is not taken for it, and a
model forward mode does not know (a Rescaling layer, a foreign activation) falls back to nested
tapes under ``mode="auto"`` with the same derivatives.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

import pinnlib
from pinnlib.derivatives import forward_supported
from pinnlib.nn import ACTIVATIONS, activation_name, sine


def test_registry_by_identity():
    assert activation_name(keras.activations.tanh) == "tanh"
    assert activation_name(sine) == "sin" and ACTIVATIONS["sin"] is sine
    assert activation_name(None) == activation_name(keras.activations.linear) == "linear"

    def sine_lookalike(x):  # same arithmetic, another function object
        return keras.ops.sin(x)

    sine_lookalike.__name__ = sine.__name__
    assert activation_name(sine_lookalike) is None
    assert activation_name(keras.activations.relu) is None


def sequential(layers):
    return keras.Sequential([keras.Input((2,)), *layers])


def test_unknown_layers_fall_back_to_tapes():
    lookalike = keras.layers.Dense(8, activation=lambda x: keras.ops.sin(x))
    rescaled = [keras.layers.Rescaling(2.0, offset=-1.0), keras.layers.Dense(8, "tanh")]
    x = tf.constant(np.random.default_rng(0).uniform(-1, 1, (16, 2)), tf.float32)
    wanted = [(2, 0), (0, 2), (1, 1)]
    for layers in ([lookalike], rescaled):
        model = sequential([*layers, keras.layers.Dense(1)])
        assert not forward_supported(model, wanted)
        auto, tape = (pinnlib.derivatives(model, x, wanted, mode=m) for m in ("auto", "tape"))
        for a in wanted:
            np.testing.assert_array_equal(auto[a].numpy(), tape[a].numpy())


def test_sine_mlp_uses_forward_mode():
    model = pinnlib.mlp(2, 2, 8, activation="sin", seed=0, dtype="float64")
    x = tf.constant(np.random.default_rng(1).uniform(-1, 1, (16, 2)))
    wanted = [(2, 0), (1, 1), (0, 4)]
    assert forward_supported(model, wanted)
    forward = pinnlib.forward_derivatives(model, x, wanted)
    tape = pinnlib.tape_derivatives(model, x, wanted)
    for a in wanted:
        np.testing.assert_allclose(forward[a].numpy(), tape[a].numpy(), rtol=1e-9, atol=1e-11)
