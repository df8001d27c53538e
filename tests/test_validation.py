"""Bad arguments get a clear error: TypeError for a wrong type, ValueError for a wrong value, and
a message that names the argument and what is allowed.

One parametrised case per argument (its test id is the argument), so a failure names it.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import pinnlib
from pinnlib import Helmholtz, ReLoBRaLo, Trainer
from pinnlib.validation import (
    IntegerTypeError,
    check_bool,
    check_choice,
    check_float,
    check_instance,
    check_int,
    check_positive,
)

PDE = Helmholtz()
QUIET = dict(progress=False, jit_compile=False, eval_points=8)


def model():
    return pinnlib.mlp(2, 1, 4, seed=0)


def train(**kw):
    args = dict(steps=1, n_interior=8, n_boundary=8, **QUIET)
    args.update(kw)
    return pinnlib.train(model(), PDE, **args)


def together(**kw):
    args = dict(steps=1, n_interior=8, n_boundary=8, **QUIET)
    args.update(kw)
    return pinnlib.train_together([model(), model()], PDE, **args)


# (argument, call, exception, words the message must contain)
CASES = [
    ("steps", lambda: train(steps=1e4), TypeError, r"steps must be an integer >= 0.*e\.g\. 10_000"),
    ("steps", lambda: train(steps=2.5), TypeError, "steps must be an integer"),
    ("steps", lambda: train(steps=-1), ValueError, r"steps must be an integer >= 0, got -1"),
    ("steps", lambda: train(steps=True), TypeError, "steps must be an integer"),
    ("steps", lambda: together(steps=1e3), TypeError, r"steps.*e\.g\. 1_000"),
    ("eval_every", lambda: train(eval_every=0), ValueError, "eval_every must be an integer >= 1"),
    ("eval_points", lambda: train(eval_points=1), ValueError, "eval_points must be .* >= 2"),
    ("chunk", lambda: train(chunk=0), ValueError, "chunk must be an integer >= 1"),
    ("chunk", lambda: Trainer(model(), PDE, chunk=2.5), TypeError, "chunk must be an integer"),
    ("n_interior", lambda: train(n_interior=0), ValueError, "n_interior must be .* >= 1"),
    ("n_interior", lambda: train(n_interior=64.0), TypeError, "n_interior must be an integer"),
    ("n_boundary", lambda: train(n_boundary=2), ValueError, "n_boundary must be .* >= 4"),
    ("learning_rate", lambda: train(learning_rate=0.0), ValueError, "learning_rate .* > 0"),
    ("learning_rate", lambda: train(learning_rate=-1e-3), ValueError, "learning_rate"),
    ("learning_rate", lambda: train(learning_rate=float("nan")), ValueError, "learning_rate"),
    ("learning_rate", lambda: train(learning_rate="fast"), TypeError, "learning_rate .* number"),
    ("learning_rate", lambda: together(learning_rate=0), ValueError, "learning_rate"),
    (
        "jit_compile",
        lambda: train(jit_compile=None),
        TypeError,
        "jit_compile must be True or False",
    ),
    ("jit_compile", lambda: train(jit_compile="yes"), TypeError, "jit_compile must be True or"),
    ("jit_compile", lambda: together(jit_compile=None), TypeError, "jit_compile"),
    (
        "derivative_mode",
        lambda: train(derivative_mode="magic"),
        ValueError,
        "derivative_mode must be one of",
    ),
    ("seed", lambda: train(seed=1.5), TypeError, "seed must be an integer"),
    ("pde", lambda: Trainer(model(), "helmholtz"), TypeError, "pde must be a pinnlib PDE, got str"),
    ("pde", lambda: pinnlib.train_together([model()], "x"), TypeError, "pde must be a pinnlib PDE"),
    (
        "balancer",
        lambda: Trainer(model(), PDE, [1.0, 1.0]),
        TypeError,
        "balancer must be a pinnlib Balancer",
    ),
    ("balancer", lambda: Trainer(model(), PDE, ReLoBRaLo(3)), ValueError, "balancer has 3 terms"),
    (
        "optimizer",
        lambda: Trainer(model(), PDE, optimizer="adam"),
        TypeError,
        "optimizer must be a Keras optimizer",
    ),
    (
        "optimizer",
        lambda: together(optimizer=keras.optimizers.Adam()),
        TypeError,
        "optimizer must be a function",
    ),
    (
        "optimizer",
        lambda: together(optimizer=lambda: "adam"),
        TypeError,
        r"optimizer\(\) must be a Keras optimizer",
    ),
    (
        "checkpoint_every",
        lambda: train(checkpoint_every=5),
        ValueError,
        "checkpoint_every needs a checkpoint_dir",
    ),
    (
        "model",
        lambda: Trainer(pinnlib.mlp(2, 1, 4, outputs=2, seed=0), PDE),
        ValueError,
        "1 output",
    ),
    ("model", lambda: Trainer(pinnlib.mlp(1, 1, 4, seed=0), PDE), ValueError, "inputs"),
    (
        "stacked",
        lambda: together(stacked=True, derivative_mode="tape"),
        ValueError,
        "stacked networks need forward mode",
    ),
    ("layers", lambda: pinnlib.mlp(2, 0, 4), ValueError, "layers must be an integer >= 1"),
    (
        "width",
        lambda: pinnlib.mlp(2, 1, 4.0),
        TypeError,
        r"width must be an integer >= 1.*e\.g\. 4",
    ),
    ("outputs", lambda: pinnlib.mlp(2, 1, 4, outputs=0), ValueError, "outputs must be"),
    (
        "activation",
        lambda: pinnlib.mlp(2, 1, 4, activation="relu"),
        ValueError,
        "activation must be one of",
    ),
    ("dtype", lambda: pinnlib.mlp(2, 1, 4, dtype="float16"), ValueError, "dtype must be one of"),
    ("output_scale", lambda: pinnlib.mlp(2, 1, 4, output_scale=0.0), ValueError, "output_scale"),
    ("k", lambda: Helmholtz(k=0), ValueError, "k must be a finite number > 0"),
    ("k", lambda: Helmholtz(k="one"), TypeError, "k must be a number"),
    (
        "nodes",
        lambda: pinnlib.cole_hopf(0.0, 0.5, nodes=2.5),
        TypeError,
        r"nodes must be an integer in \[2, 300\]",
    ),
    (
        "nodes",
        lambda: pinnlib.cole_hopf(0.0, 0.5, nodes=400),
        ValueError,
        r"nodes must be an integer in \[2, 300\]",
    ),
    ("n", lambda: PDE.grid(1), ValueError, "n must be an integer >= 2"),
    (
        "mode",
        lambda: pinnlib.laplacian(model(), np.zeros((2, 2), np.float32), mode="x"),
        ValueError,
        "mode must be one of",
    ),
    ("n_interior", lambda: pinnlib.PINNModel(model(), PDE, n_interior=0), ValueError, "n_interior"),
]


@pytest.mark.parametrize(
    "argument, call, error, words", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_bad_argument_is_named(argument, call, error, words):
    with pytest.raises(error, match=words) as info:
        call()
    assert argument in str(info.value)


def test_the_checks_themselves():
    assert check_int("n", np.int64(3), 1, 5) == 3 and type(check_int("n", np.int64(3))) is int
    assert check_float("x", "0.5", 0, 1) == 0.5 and check_positive("x", 2) == 2.0
    assert check_bool("b", np.bool_(True)) is True
    assert check_choice("c", "a", ("a", "b")) == "a"
    assert check_instance("i", 3, int, "an int") == 3
    # A float for an integer is a TypeError, and (for code written before 0.3) a ValueError too.
    with pytest.raises(IntegerTypeError) as info:
        check_int("steps", 1e4, 0)
    assert isinstance(info.value, TypeError) and isinstance(info.value, ValueError)
    assert str(info.value) == (
        "steps must be an integer >= 0, got 10000.0 (a float); use an integer, e.g. 10_000"
    )
    with pytest.raises(ValueError, match=r"x must be a finite number in \(0, 1\], got 0.0"):
        check_float("x", 0.0, 0, 1, low_open=True)
    with pytest.raises(ValueError, match=r"x must be a finite number < 1, got 1.0"):
        check_float("x", 1.0, high=1, high_open=True)
    with pytest.raises(ValueError, match=r"n must be an integer <= 5, got 6"):
        check_int("n", 6, high=5)
    with pytest.raises(TypeError, match="b must be True or False, got 1"):
        check_bool("b", 1)
    with pytest.raises(ValueError, match=r"c must be one of \('a', 'b'\), got 1"):
        check_choice("c", 1, ("a", "b"))
    with pytest.raises(TypeError, match="x must be a number, got True"):
        check_float("x", True)
