"""Balancers refuse non-finite inputs and keep their state bit-identical (issue 15).

One NaN loss fed to ReLoBRaLo used to turn its weights into NaN for good. Now every balancer
checks its inputs before storing anything. The documented behaviour per context (module
docstring of pinnlib.balancing): eagerly a FloatingPointError naming the term and its value;
in a tf.function a tf.errors.InvalidArgumentError with the same facts; under XLA (where Assert
compiles to nothing) NaN weights and untouched state. In every context the state (every
tracked variable, the lookback generator's included) is bit-identical after the refused call,
so the next finite call gives exactly what it would have given without it: each test runs a
twin balancer that never sees the bad call and compares.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given
from hypothesis import strategies as st

from pinnlib import (
    Fixed,
    GlobalGradNorm,
    GradNorm,
    HomoscedasticUncertainty,
    LRAnnealing,
    ReLoBRaLo,
    SoftAdapt,
    Sum,
)

KINDS = [
    "Sum",
    "Fixed",
    "SoftAdapt",
    "ReLoBRaLo",
    "LRAnnealing",
    "GradNorm",
    "GlobalGradNorm",
    "HomoscedasticUncertainty",
]
BAD = [float("nan"), float("inf"), float("-inf")]
BAD_TEXT = {"nan": "nan", "inf": "inf", "-inf": "-inf"}


def make(kind, n, dtype="float32"):
    return {
        "Sum": lambda: Sum(n, dtype=dtype),
        "Fixed": lambda: Fixed(np.linspace(1.0, 2.0, n), dtype=dtype),
        "SoftAdapt": lambda: SoftAdapt(n, temperature=0.5, dtype=dtype),
        # rho strictly inside (0, 1): both lookback branches occur, so a generator that a
        # refused call advanced would change the twin comparison.
        "ReLoBRaLo": lambda: ReLoBRaLo(n, alpha=0.9, temperature=0.5, rho=0.5, seed=3, dtype=dtype),
        "LRAnnealing": lambda: LRAnnealing(n, update_every=2, dtype=dtype),
        "GradNorm": lambda: GradNorm(n, learning_rate=0.5, shared_variable=0, dtype=dtype),
        "GlobalGradNorm": lambda: GlobalGradNorm(n, update_every=2, dtype=dtype),
        "HomoscedasticUncertainty": lambda: HomoscedasticUncertainty(n, dtype=dtype),
    }[kind]()


def state(b):
    """Every tf.Variable the balancer tracks (the generator's state too), as raw bytes."""
    found = [t for t in tf.train.TrackableView(b).descendants() if isinstance(t, tf.Variable)]
    return {f"{i}:{v.name}": v.numpy().tobytes() for i, v in enumerate(found)}


def inputs(rng, n, dtype=np.float32):
    """Finite positive losses and per-term gradients over two 'variables' (2x2 and 3)."""
    losses = (10.0 ** rng.uniform(-1, 1, n)).astype(dtype)
    grads = [
        [rng.normal(size=(2, 2)).astype(dtype), rng.normal(size=3).astype(dtype)] for _ in range(n)
    ]
    return losses, grads


def call(b, losses, grads, fn=None):
    fn = fn or b.update
    if b.needs_gradients:
        return fn(tf.constant(losses), [[tf.constant(g) for g in term] for term in grads])
    return fn(tf.constant(losses))


def test_state_covers_every_checkpointed_variable(tmp_path):
    # The snapshot must see everything a checkpoint saves, else "unchanged" proves little.
    for kind in KINDS:
        b = make(kind, 3)
        path = tf.train.Checkpoint(b=b).save(str(tmp_path / kind))
        saved = [k for k, _ in tf.train.list_variables(path) if k.startswith("b/")]
        assert len(state(b)) == len(saved), (kind, saved)


# -- eagerly: FloatingPointError, property-tested over terms, positions, steps and values ------
@pytest.mark.parametrize("kind", KINDS)
@given(data=st.data())
def test_eager_refuses_non_finite_loss_and_keeps_state(kind, data):
    n = data.draw(st.integers(1, 4), label="n")
    at_step = data.draw(st.integers(0, 4), label="step")  # 0 and ReLoBRaLo's warm-up 1, 2
    position = data.draw(st.integers(0, n - 1), label="position")
    bad = data.draw(st.sampled_from(BAD), label="value")
    seed = data.draw(st.integers(0, 2**16), label="seed")
    rng = np.random.default_rng(seed)
    b, twin = make(kind, n), make(kind, n)
    for _ in range(at_step):
        losses, grads = inputs(rng, n)
        call(b, losses, grads)
        call(twin, losses, grads)
    before = state(b)
    losses, grads = inputs(rng, n)
    losses[position] = bad
    text = BAD_TEXT[str(bad)]
    with pytest.raises(
        FloatingPointError, match=rf"{kind}\.update refused loss term {position}: it is {text}"
    ):
        call(b, losses, grads)
    assert state(b) == before
    # Also through __call__ (the weighted total).
    with pytest.raises(FloatingPointError, match=rf"loss term {position}"):
        call(b, losses, grads, fn=b.__call__)
    assert state(b) == before
    for _ in range(2):  # the next finite steps are exactly the twin's
        losses, grads = inputs(rng, n)
        np.testing.assert_array_equal(
            call(b, losses, grads).numpy(), call(twin, losses, grads).numpy()
        )
        assert state(b) == state(twin)


@pytest.mark.parametrize("kind", ["LRAnnealing", "GradNorm", "GlobalGradNorm"])
@given(data=st.data())
def test_eager_refuses_non_finite_gradient_and_keeps_state(kind, data):
    n = data.draw(st.integers(1, 3), label="n")
    at_step = data.draw(st.integers(0, 3), label="step")
    term = data.draw(st.integers(0, n - 1), label="term")
    # GradNorm reads only the shared variable (index 0 here); LRAnnealing reads every one.
    variable = 0 if kind == "GradNorm" else data.draw(st.integers(0, 1), label="variable")
    bad = data.draw(st.sampled_from(BAD), label="value")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16), label="seed"))
    b, twin = make(kind, n), make(kind, n)
    for _ in range(at_step):
        losses, grads = inputs(rng, n)
        call(b, losses, grads)
        call(twin, losses, grads)
    before = state(b)
    losses, grads = inputs(rng, n)
    grads[term][variable].flat[1] = bad
    with pytest.raises(
        FloatingPointError,
        match=rf"refused the gradients of loss term {term}: gradient {variable} has {BAD_TEXT[str(bad)]}",
    ):
        call(b, losses, grads)
    assert state(b) == before
    losses, grads = inputs(rng, n)
    np.testing.assert_array_equal(call(b, losses, grads).numpy(), call(twin, losses, grads).numpy())
    assert state(b) == state(twin)


def test_gradnorm_ignores_gradients_it_does_not_read():
    # GradNorm uses only the shared variable's gradient: a NaN elsewhere cannot poison its
    # state, and refusing it would be a fault of the optimizer's business, not the balancer's.
    rng = np.random.default_rng(0)
    losses, grads = inputs(rng, 2)
    grads[1][1][0] = np.nan
    b, twin = make("GradNorm", 2), make("GradNorm", 2)
    clean = [[grads[0][0], grads[0][1]], [grads[1][0], np.zeros(3, np.float32)]]
    np.testing.assert_array_equal(call(b, losses, grads).numpy(), call(twin, losses, clean).numpy())


def test_overflow_in_the_balancers_dtype_is_named():
    b = ReLoBRaLo(2, seed=0)  # float32 state
    before = state(b)
    with pytest.raises(
        FloatingPointError, match=r"term 1: it is inf \(1e\+300 overflows float32\)"
    ):
        b.update(tf.constant([1.0, 1e300], tf.float64))
    assert state(b) == before


def test_check_false_skips_the_check():
    # The documented opt-out for callers that have checked already: nothing is refused then.
    b = ReLoBRaLo(2, seed=0)
    b.update([1.0, 2.0], check=False)
    b.update([1.0, float("nan")], check=False)
    assert int(b.step.numpy()) == 2
    assert np.isnan(b.previous_losses.numpy()[1])


# -- in a tf.function and under XLA: every step, position and value ----------------------------
def compiled(b, jit_compile):
    if b.needs_gradients:
        return tf.function(lambda losses, grads: b.update(losses, grads), jit_compile=jit_compile)
    return tf.function(lambda losses: b.update(losses), jit_compile=jit_compile)


def graph_call(fn, b, losses, grads):
    if b.needs_gradients:
        return fn(tf.constant(losses), [[tf.constant(g) for g in term] for term in grads])
    return fn(tf.constant(losses))


@pytest.mark.parametrize("jit_compile", [False, True], ids=["tf.function", "xla"])
@pytest.mark.parametrize("kind", KINDS)
def test_compiled_refuses_non_finite_loss_and_keeps_state(kind, jit_compile):
    n, steps = 3, 4
    rng = np.random.default_rng(KINDS.index(kind))
    b, twin = make(kind, n), make(kind, n)
    fb, ft = compiled(b, jit_compile), compiled(twin, jit_compile)
    for step in range(steps):
        for position in range(n):
            for bad in BAD:
                before = state(b)
                losses, grads = inputs(rng, n)
                losses[position] = bad
                if jit_compile:
                    # XLA compiles Assert to nothing: NaN weights, the state left alone.
                    assert np.all(np.isnan(graph_call(fb, b, losses, grads).numpy()))
                else:
                    pattern = (
                        rf"{kind}\.update refused a non-finite loss: term\] \[{position}\] "
                        rf"\[is\] \[{BAD_TEXT[str(bad)]}\]"
                    )
                    with pytest.raises(tf.errors.InvalidArgumentError, match=pattern):
                        graph_call(fb, b, losses, grads)
                assert state(b) == before, (step, position, bad)
        losses, grads = inputs(rng, n)
        got = graph_call(fb, b, losses, grads).numpy()
        np.testing.assert_array_equal(got, graph_call(ft, twin, losses, grads).numpy())
        assert np.all(np.isfinite(got))
        assert state(b) == state(twin)
        assert int(b.step.numpy()) == step + 1


@pytest.mark.parametrize("jit_compile", [False, True], ids=["tf.function", "xla"])
@pytest.mark.parametrize("kind", ["LRAnnealing", "GradNorm", "GlobalGradNorm"])
def test_compiled_refuses_non_finite_gradient_and_keeps_state(kind, jit_compile):
    n = 2
    rng = np.random.default_rng(5)
    b, twin = make(kind, n), make(kind, n)
    fb, ft = compiled(b, jit_compile), compiled(twin, jit_compile)
    for step in range(3):
        for term in range(n):
            before = state(b)
            losses, grads = inputs(rng, n)
            grads[term][0][1, 0] = BAD[(step + term) % 3]
            if jit_compile:
                assert np.all(np.isnan(graph_call(fb, b, losses, grads).numpy()))
            else:
                pattern = rf"refused the gradients of loss term\] \[{term}\] \[has a non-finite"
                with pytest.raises(tf.errors.InvalidArgumentError, match=pattern):
                    graph_call(fb, b, losses, grads)
            assert state(b) == before
        losses, grads = inputs(rng, n)
        np.testing.assert_array_equal(
            graph_call(fb, b, losses, grads).numpy(), graph_call(ft, twin, losses, grads).numpy()
        )
        assert state(b) == state(twin)


def test_compiled_finite_path_matches_eager():
    # The guard changes nothing on finite inputs: the compiled weights equal the eager ones.
    rng = np.random.default_rng(1)
    seq = [inputs(rng, 3)[0] for _ in range(5)]
    eager, graph = make("ReLoBRaLo", 3, "float64"), make("ReLoBRaLo", 3, "float64")
    fn = compiled(graph, False)
    for losses in seq:
        want = eager.update(tf.constant(losses, tf.float64)).numpy()
        np.testing.assert_allclose(fn(tf.constant(losses, tf.float64)).numpy(), want, rtol=1e-12)
