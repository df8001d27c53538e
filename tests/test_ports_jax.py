"""The JAX port (pinnlib.ports.jax_balancing) against the shared golden cases.

Same NumPy rules and inputs as the TensorFlow balancers (tests/golden_balancers.py). JAX is
part of the ``test`` extra: if it is missing, the import below fails this file (it is not
skipped). Float64 needs ``jax_enable_x64``, switched on here for this process. ReLoBRaLo's
lookbacks are replayed from the port's key: ``key, sub = split(key)``, ``uniform(sub)``.
"""

from __future__ import annotations

import inspect
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
        step_grads = None if grads is None else list(grads[t])  # one pytree per term
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


def defaults(factory) -> dict:
    return {
        name: p.default
        for name, p in inspect.signature(factory).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


def test_defaults():
    """The same defaults as the TensorFlow balancers (golden.DEFAULTS)."""
    lra = defaults(jb.lr_annealing)
    assert lra["form"] is None and lra["weighted"] is None  # None means "published":
    np.testing.assert_array_equal(  # the default balancer is the published form's
        run(jb.lr_annealing(3, dtype="float64"), golden.LOSSES, golden.gradients())[0],
        golden.lr_annealing_golden(golden.gradients(), {}),
    )
    for name, value in golden.DEFAULTS["LRAnnealing"].items():
        assert name == "form" or lra[name] == value, name
    gradnorm = defaults(jb.gradnorm)
    for name, value in golden.DEFAULTS["GradNorm"].items():
        assert gradnorm[name] == value, name
    assert gradnorm["learning_rate"] is None
    assert jb.GRADNORM_LEARNING_RATES == golden.GRADNORM_LEARNING_RATES
    assert jb.GRADNORM_ADAM == golden.ADAM
    ggn = defaults(jb.global_grad_norm)
    for name, value in golden.DEFAULTS["GlobalGradNorm"].items():
        assert ggn[name] == value, name


@pytest.mark.parametrize("case", golden.LR_ANNEALING_CASES + [{}], ids=str)
def test_lr_annealing_golden(case):
    grads = golden.gradients()
    got, _ = run(jb.lr_annealing(golden.NUM_TERMS, **case, dtype="float64"), golden.LOSSES, grads)
    np.testing.assert_allclose(got, golden.lr_annealing_golden(grads, case), **F64)


def test_lr_annealing_weighted_maps_onto_forms():
    grads = golden.gradients()
    for weighted, form in [(True, "published"), (False, "unweighted")]:
        got, _ = run(jb.lr_annealing(3, weighted=weighted, dtype="float64"), golden.LOSSES, grads)
        want = golden.lr_annealing_golden(grads, {"form": form})
        np.testing.assert_allclose(got, want, **F64)
    with pytest.raises(ValueError, match="weighted=False means form='unweighted'"):
        jb.lr_annealing(2, weighted=False, form="published")
    with pytest.raises(ValueError, match="form must be one of"):
        jb.lr_annealing(2, form="paper")
    annealing = jb.lr_annealing(2, form="authors_code")
    with pytest.raises(ValueError, match="ndim == 2"):  # no weight matrix to read
        annealing.update(jnp.ones(2), annealing.init(), [[jnp.ones(2)], [jnp.ones(2)]])


@pytest.mark.parametrize("case", golden.GLOBAL_GRAD_NORM_CASES + [{}], ids=str)
def test_global_grad_norm_golden(case):
    grads = golden.gradients()
    balancer = jb.global_grad_norm(golden.NUM_TERMS, **case, dtype="float64")
    want = golden.global_grad_norm_golden(grads, case)
    np.testing.assert_allclose(run(balancer, golden.LOSSES, grads)[0], want, **F64)


@pytest.mark.parametrize("case", golden.GRADNORM_CASES + [{}, {"update": "sgd"}], ids=str)
def test_gradnorm_golden(case):
    grads = golden.gradients()
    balancer = jb.gradnorm(golden.NUM_TERMS, **case, dtype="float64")
    want, hits = golden.gradnorm_golden(golden.LOSSES, grads, case)
    got, state = run(balancer, golden.LOSSES, grads)
    np.testing.assert_allclose(got, want, **F64)
    np.testing.assert_array_equal(np.asarray(state.floor_hits), hits)


def test_gradients_as_pytrees():
    """Per-term gradients given as nested dicts (a network's parameter tree) read as their
    leaves, in tree_leaves order."""
    grads = golden.gradients()
    as_trees = [
        [{"layer0": {"kernel": t[0], "bias": t[1]}, "layer1": {"kernel": t[2], "bias": t[3]}}
         for t in step]
        for step in grads
    ]  # fmt: skip
    # tree_leaves orders dict keys: layer0 bias, kernel, layer1 bias, kernel. Leaf -1 is then
    # the last kernel, which is -2 in the list form.
    case = {**golden.GRADNORM_CASES[0], "shared_variable": -1}
    balancer = jb.gradnorm(golden.NUM_TERMS, **case, dtype="float64")
    got, _ = run(balancer, golden.LOSSES, as_trees)
    want, _ = golden.gradnorm_golden(golden.LOSSES, grads, golden.GRADNORM_CASES[0])
    np.testing.assert_allclose(got, want, **F64)
    # authors_code finds the kernels by ndim wherever the tree puts them.
    case = golden.LR_ANNEALING_CASES[3]
    got, _ = run(
        jb.lr_annealing(golden.NUM_TERMS, **case, dtype="float64"), golden.LOSSES, as_trees
    )
    np.testing.assert_allclose(got, golden.lr_annealing_golden(grads, case), **F64)


@pytest.mark.parametrize("point", range(len(golden.UNCERTAINTY_POINTS)))
def test_homoscedastic_uncertainty_total_and_gradients(point):
    losses, s = golden.UNCERTAINTY_POINTS[point]
    balancer = jb.homoscedastic_uncertainty(golden.NUM_TERMS, dtype="float64")
    total, (ds, dL) = jax.value_and_grad(balancer.total, argnums=(0, 1))(
        jnp.asarray(s, jnp.float64), jnp.asarray(losses)
    )
    want_total, want_ds, want_dL = golden.homoscedastic_uncertainty(losses, s)
    np.testing.assert_allclose(float(total), want_total, **F64)
    np.testing.assert_allclose(np.asarray(ds), want_ds, **F64)
    np.testing.assert_allclose(np.asarray(dL), want_dL, **F64)
    np.testing.assert_allclose(np.asarray(balancer.weights(jnp.asarray(s))), want_dL, **F64)


def test_homoscedastic_uncertainty_trained_by_sgd():
    """exp(-s) L + s differentiated by jax.grad, plain gradient descent: the NumPy weights."""
    balancer = jb.homoscedastic_uncertainty(golden.NUM_TERMS, dtype="float64")
    s = balancer.init()
    np.testing.assert_array_equal(np.asarray(s), np.zeros(golden.NUM_TERMS))
    grad = jax.jit(jax.value_and_grad(balancer.total))
    weights, totals = [], []
    for row in golden.LOSSES:
        weights.append(np.asarray(balancer.weights(s)))
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
        jb.lr_annealing(3, update_every=3, form="authors_code", dtype="float64"),
        jb.global_grad_norm(3, update_every=2, form="jaxpi", dtype="float64"),
        jb.gradnorm(3, dtype="float64"),
        jb.gradnorm(3, update="sgd", dtype="float64"),
    ]


ALL = range(len(make_all()))


@pytest.mark.parametrize("index", ALL)
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
@pytest.mark.parametrize("index", ALL)
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
        jb.global_grad_norm(2, update_every=0)
    with pytest.raises(ValueError, match="momentum"):
        jb.global_grad_norm(2, momentum=1.0)
    with pytest.raises(ValueError, match="form"):
        jb.global_grad_norm(2, form="sum")
    with pytest.raises(ValueError, match="update must be one of"):
        jb.gradnorm(2, update="adamw")
    with pytest.raises(ValueError, match="3 loss terms"):
        jb.homoscedastic_uncertainty(3).total(jnp.zeros(3), jnp.ones(2))
