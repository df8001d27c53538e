"""The JAX port (pinnlib.ports.jax_balancing) against the shared golden cases.

Same NumPy rules and inputs as the TensorFlow balancers (tests/golden_balancers.py). JAX is
part of the ``test`` extra: if it is missing, the import below fails this file (it is not
skipped). Float64 needs ``jax_enable_x64``, switched on here for this process. ReLoBRaLo's
lookbacks are replayed from the port's key: ``key, sub = split(key)``, ``uniform(sub)``.
"""

from __future__ import annotations

import io

import golden_balancers as golden
import jax
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402

from pinnlib.ports import jax_balancing as jb  # noqa: E402

F64 = {"rtol": 1e-10, "atol": 1e-12}
F32 = {"rtol": 2e-5, "atol": 1e-6}
DTYPES = [("float64", F64), ("float32", F32)]


def run(balancer, losses, grads=None, state=None, jit=True):
    update = jax.jit(balancer.update) if jit else balancer.update
    state = balancer.init() if state is None else state
    out = []
    for t, row in enumerate(losses):
        step_grads = None if grads is None else [list(term) for term in grads[t]]
        weights, state = update(jnp.asarray(row), state, step_grads)
        out.append(np.asarray(weights, np.float64))
    return np.array(out), state


def jax_draws(seed: int, steps: int) -> np.ndarray:
    key, out = jax.random.PRNGKey(seed), []
    for _ in range(steps):
        key, sub = jax.random.split(key)
        out.append(float(jax.random.uniform(sub, (), jnp.float32)))
    return np.array(out)


@pytest.mark.parametrize("dtype, tol", DTYPES)
def test_sum_fixed_softadapt(dtype, tol):
    got, _ = run(jb.sum_weights(golden.NUM_TERMS, dtype=dtype), golden.LOSSES)
    np.testing.assert_array_equal(got, golden.sum_weights(golden.LOSSES))
    got, _ = run(jb.fixed(golden.FIXED_WEIGHTS, dtype=dtype), golden.LOSSES)
    np.testing.assert_allclose(
        got, golden.fixed_weights(golden.LOSSES, golden.FIXED_WEIGHTS), **tol
    )
    got, _ = run(jb.softadapt(golden.NUM_TERMS, **golden.SOFTADAPT, dtype=dtype), golden.LOSSES)
    np.testing.assert_allclose(got, golden.softadapt(golden.LOSSES, **golden.SOFTADAPT), **tol)


@pytest.mark.parametrize("dtype, tol", DTYPES)
@pytest.mark.parametrize("jit", [True, False])
def test_relobralo_golden(dtype, tol, jit):
    draws = jax_draws(golden.SEED, golden.NUM_STEPS)
    looked_back = draws[2:] >= golden.RELOBRALO["rho"]
    assert looked_back.any() and not looked_back.all(), "the case must mix lookbacks and not"
    balancer = jb.relobralo(golden.NUM_TERMS, **golden.RELOBRALO, seed=golden.SEED, dtype=dtype)
    got, _ = run(balancer, golden.LOSSES, jit=jit)
    np.testing.assert_allclose(
        got, golden.relobralo(golden.LOSSES, draws, **golden.RELOBRALO), **tol
    )


@pytest.mark.parametrize(
    "make",
    [
        lambda: jb.relobralo(3, **{**golden.RELOBRALO, "eps": 0.0}, seed=3, dtype="float64"),
        lambda: jb.softadapt(3, eps=0.0, dtype="float64"),
    ],
)
def test_scale_invariance(make):
    """Multiplying each term by its own constant (a change of units) moves no weight."""
    scaled = golden.LOSSES * np.array([1e-3, 250.0, 7.0])
    np.testing.assert_allclose(run(make(), scaled)[0], run(make(), golden.LOSSES)[0], rtol=1e-12)


@pytest.mark.parametrize("case", golden.LR_ANNEALING_CASES)
def test_lr_annealing_golden(case):
    grads = golden.gradients()
    got, _ = run(jb.lr_annealing(golden.NUM_TERMS, **case, dtype="float64"), golden.LOSSES, grads)
    np.testing.assert_allclose(got, golden.lr_annealing_golden(grads, case), **F64)


@pytest.mark.parametrize("case", golden.GRAD_NORM_WEIGHTING_CASES)
def test_grad_norm_weighting_golden(case):
    grads = golden.gradients()
    balancer = jb.grad_norm_weighting(golden.NUM_TERMS, **case, dtype="float64")
    want = golden.grad_norm_weighting(grads, case["a"], case["update_every"])
    np.testing.assert_allclose(run(balancer, golden.LOSSES, grads)[0], want, **F64)


def test_gradnorm_golden():
    grads = golden.gradients()
    balancer = jb.gradnorm(golden.NUM_TERMS, **golden.GRADNORM_CASE, dtype="float64")
    want = golden.gradnorm_golden(golden.LOSSES, grads)
    np.testing.assert_allclose(run(balancer, golden.LOSSES, grads)[0], want, **F64)


def test_gradients_as_pytrees():
    """Per-term gradients given as dicts (a network's parameter tree) read as their leaves."""
    grads = golden.gradients()
    as_trees = [[{"kernel": t[0], "bias": t[1]} for t in step] for step in grads]
    # tree_leaves orders dict keys: bias, kernel. Shared leaf -1 is then the kernel.
    case = {**golden.GRADNORM_CASE, "shared_variable": -1}
    balancer = jb.gradnorm(golden.NUM_TERMS, **case, dtype="float64")
    update = jax.jit(balancer.update)
    state, out = balancer.init(), []
    for t, row in enumerate(golden.LOSSES):
        weights, state = update(jnp.asarray(row), state, as_trees[t])
        out.append(np.asarray(weights))
    np.testing.assert_allclose(np.array(out), golden.gradnorm_golden(golden.LOSSES, grads), **F64)


def test_uncertainty_golden():
    """exp(-s) L + s differentiated by jax.grad, plain gradient descent: the NumPy weights."""
    s = jb.uncertainty_init(golden.NUM_TERMS, dtype="float64")
    grad = jax.jit(jax.value_and_grad(jb.uncertainty_total))
    weights, totals = [], []
    for row in golden.LOSSES:
        weights.append(np.exp(-np.asarray(s)))
        total, ds = grad(s, jnp.asarray(row))
        totals.append(float(total))
        s = s - golden.UNCERTAINTY_LR * ds
    want_w, want_t = golden.uncertainty_sgd(golden.LOSSES, golden.UNCERTAINTY_LR)
    np.testing.assert_allclose(np.array(weights), want_w, **F64)
    np.testing.assert_allclose(np.array(totals), want_t, **F64)


def make_all():
    return [
        jb.relobralo(3, **golden.RELOBRALO, seed=5, dtype="float64"),
        jb.softadapt(3, dtype="float64"),
        jb.lr_annealing(3, update_every=3, dtype="float64"),
        jb.grad_norm_weighting(3, update_every=2, dtype="float64"),
        jb.gradnorm(3, dtype="float64"),
    ]


@pytest.mark.parametrize("index", range(5))
def test_exact_resume_through_numpy(index):
    """The state saved with NumPy (np.savez of its leaves) and rebuilt continues bit for bit."""
    grads = golden.gradients()
    balancer = make_all()[index]
    g = grads if balancer.needs_gradients else None
    reference, _ = run(balancer, golden.LOSSES, g)
    _, state = run(balancer, golden.LOSSES[:6], None if g is None else g[:6])
    leaves, treedef = jax.tree_util.tree_flatten(state)
    file = io.BytesIO()
    np.savez(file, *[np.asarray(leaf) for leaf in leaves])
    file.seek(0)
    loaded = np.load(file)
    restored = jax.tree_util.tree_unflatten(
        treedef, [jnp.asarray(loaded[f"arr_{i}"]) for i in range(len(leaves))]
    )
    rest, _ = run(balancer, golden.LOSSES[6:], None if g is None else g[6:], state=restored)
    np.testing.assert_array_equal(rest, reference[6:])


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("index", range(5))
def test_non_finite_refused_state_unchanged(bad, index):
    """Under jit a non-finite loss (or gradient read) gives NaN weights and the old state."""
    grads = golden.gradients()
    balancer = make_all()[index]
    g = grads if balancer.needs_gradients else None
    _, state = run(balancer, golden.LOSSES[:4], None if g is None else g[:4])
    update = jax.jit(balancer.update)
    row = golden.LOSSES[4].copy()
    row[1] = bad
    weights, after = update(jnp.asarray(row), state, None if g is None else g[4])
    assert np.all(np.isnan(np.asarray(weights)))
    for x, y in zip(jax.tree_util.tree_leaves(after), jax.tree_util.tree_leaves(state)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    if balancer.needs_gradients:
        step_grads = [[np.array(v) for v in term] for term in g[4]]
        step_grads[2][-2][0, 0] = bad
        weights, after = update(jnp.asarray(golden.LOSSES[4]), state, step_grads)
        assert np.all(np.isnan(np.asarray(weights)))
        for x, y in zip(jax.tree_util.tree_leaves(after), jax.tree_util.tree_leaves(state)):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    # The next finite step gives what it would have given without the refused one.
    continued, _ = run(balancer, golden.LOSSES[4:], None if g is None else g[4:], state=after)
    straight, _ = run(balancer, golden.LOSSES, g)
    np.testing.assert_array_equal(continued, straight[4:])


def test_bad_arguments_named():
    with pytest.raises(ValueError, match="alpha"):
        jb.relobralo(2, alpha=1.5)
    with pytest.raises(ValueError, match="temperature"):
        jb.softadapt(2, temperature=0.0)
    with pytest.raises(TypeError, match="num_terms"):
        jb.sum_weights(2.0)
    with pytest.raises(ValueError, match="weights"):
        jb.fixed([0.0, 0.0])
    balancer = jb.sum_weights(2)
    with pytest.raises(ValueError, match="2 loss terms"):
        balancer.update(jnp.ones(3), balancer.init())
    annealing = jb.lr_annealing(2)
    with pytest.raises(ValueError, match="needs per-term gradients"):
        annealing.update(jnp.ones(2), annealing.init())
    with pytest.raises(ValueError, match="update_every"):
        jb.grad_norm_weighting(2, update_every=0)
