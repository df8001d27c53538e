"""ConFIG and NTK weighting (pinnlib.balancing.ConFIG, pinnlib.balancing.NTKWeights).

ConFIG is checked against a NumPy re-derivation of the paper's formula (``np.linalg.pinv`` of
the unit-row matrix, the update scaled by the sum of projections) and against its defining
properties: equal cosines with every term gradient, all positive, and the length equal to the
sum of the projections. NTK weighting is checked against traces computed with an explicit
per-point gradient in a Python loop (float64, a tiny network), over several steps including
the update period. Then the ways pinnlib trains: the compiled step applies ConFIG's direction,
checkpoints resume exactly, non-finite losses are refused by term, Keras ``fit``, grouped and
stacked runs, and tf.distribute (which refuses NTKWeights, saying why).
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import pinnlib
from pinnlib import ConFIG, NTKWeights
from pinnlib.balancing import config_coefficients, kernel_traces
from pinnlib.training.runs import kernel_points
from pinnlib.training.step import balanced_step

SMALL = dict(n_interior=32, n_boundary=16, progress=False, eval_points=8, jit_compile=False)


# -- ConFIG against NumPy ---------------------------------------------------------------------
def np_config(G: np.ndarray) -> np.ndarray:
    """The paper's update: g_u = pinv(U) 1, U = unit rows; g_c = (sum_i g_i . e) e."""
    U = G / np.linalg.norm(G, axis=1, keepdims=True)
    g_u = np.linalg.pinv(U) @ np.ones(len(G))
    e = g_u / np.linalg.norm(g_u)
    return (G @ e).sum() * e


def as_grads(G: np.ndarray, dtype=tf.float64):
    """Rows of G as per-term gradient lists over two variables (shapes (4, 5) and (n - 20,))."""
    return [[tf.constant(g[:20].reshape(4, 5), dtype), tf.constant(g[20:], dtype)] for g in G]


def flat(direction) -> np.ndarray:
    return np.concatenate([np.ravel(d.numpy()) for d in direction]).astype(np.float64)


def gradients(rng, n, size=60, conflict=None):
    G = rng.normal(size=(n, size)) * 10.0 ** rng.uniform(-2, 2, size=(n, 1))
    if conflict is not None:  # term 1 nearly opposite to term 0: cosine about -1 + conflict
        G[1] = -G[0] * 3.0 + conflict * np.linalg.norm(G[0]) * rng.normal(size=size) / size**0.5
    return G


CASES = [(2, None), (3, None), (4, None), (2, 1e-2), (3, 1e-3), (4, 1e-2)]


@pytest.mark.parametrize("n,conflict", CASES)
def test_config_matches_numpy_and_has_equal_positive_cosines(n, conflict):
    rng = np.random.default_rng(n + (0 if conflict is None else 7))
    G = gradients(rng, n, conflict=conflict)
    if conflict is not None:
        cos01 = G[0] @ G[1] / np.linalg.norm(G[0]) / np.linalg.norm(G[1])
        assert cos01 < -0.99  # really nearly conflicting
    b = ConFIG(n, dtype="float64")
    g_c = flat(b.direction(tf.ones([n], tf.float64), as_grads(G)))
    want = np_config(G)
    np.testing.assert_allclose(g_c, want, rtol=1e-7, atol=1e-12 * np.abs(want).max())
    cos = G @ g_c / np.linalg.norm(G, axis=1) / np.linalg.norm(g_c)
    np.testing.assert_allclose(cos, cos[0], rtol=1e-7)  # the same cosine with every g_i
    assert np.all(G @ g_c > 0)  # a descent direction for every term
    e = g_c / np.linalg.norm(g_c)
    assert np.linalg.norm(g_c) == pytest.approx(np.sum(G @ e), rel=1e-9)  # sum of projections
    np.testing.assert_allclose(b.cosines.numpy(), cos, rtol=1e-7)
    # The recorded equivalent weights give the same update: g_c = sum_i w_i g_i.
    np.testing.assert_allclose(b.lambdas.numpy() @ G, g_c, rtol=1e-7, atol=1e-12 * want.max())


@pytest.mark.parametrize("n", [2, 3])
def test_config_float32_gradients(n):
    rng = np.random.default_rng(40 + n)
    G = gradients(rng, n, conflict=1e-1).astype(np.float32).astype(np.float64)
    b = ConFIG(n)
    g_c = flat(b.direction(tf.ones([n]), as_grads(G, tf.float32)))
    np.testing.assert_allclose(g_c, np_config(G), rtol=1e-4, atol=1e-6 * np.abs(G).max())
    assert b.lambdas.dtype == tf.float32


def test_config_one_term_is_that_gradient():
    rng = np.random.default_rng(1)
    G = gradients(rng, 1)
    b = ConFIG(1, dtype="float64")
    np.testing.assert_allclose(flat(b.direction([1.0], as_grads(G))), G[0], rtol=1e-12)
    np.testing.assert_allclose(b.lambdas.numpy(), [1.0], rtol=1e-12)
    np.testing.assert_allclose(b.cosines.numpy(), [1.0], rtol=1e-12)


def test_config_coefficients_from_gram_match_pinv_of_unit_rows():
    rng = np.random.default_rng(3)
    for n in (2, 3, 4):
        G = gradients(rng, n)
        w, cos = config_coefficients(tf.constant(G @ G.T))
        np.testing.assert_allclose(w.numpy() @ G, np_config(G), rtol=1e-8)


def test_config_exactly_opposed_gradients_give_a_zero_update():
    # U^+ 1 is zero: no direction decreases both terms; the authors' code returns zero too.
    g = np.arange(1.0, 61.0)
    b = ConFIG(2, dtype="float64")
    g_c = flat(b.direction([1.0, 1.0], as_grads(np.stack([g, -2.0 * g]))))
    np.testing.assert_array_equal(g_c, 0.0)
    np.testing.assert_array_equal(b.cosines.numpy(), [0.0, 0.0])


def test_config_total_has_the_direction_as_gradient():
    # b(losses, grads) returns sum_i w_i L_i, whose gradient (w constant) is g_c.
    rng = np.random.default_rng(5)
    A = tf.constant(rng.normal(size=(2, 6)))
    theta = tf.Variable(rng.normal(size=6))
    b = ConFIG(2, dtype="float64")
    with tf.GradientTape(persistent=True) as tape:
        losses = [tf.reduce_sum((A[0] * theta - 1.0) ** 2), tf.reduce_sum((A[1] * theta) ** 2)]
    grads = [[tape.gradient(L, theta)] for L in losses]
    want = np_config(np.stack([g[0].numpy() for g in grads]))
    with tf.GradientTape() as tape2:
        losses = [tf.reduce_sum((A[0] * theta - 1.0) ** 2), tf.reduce_sum((A[1] * theta) ** 2)]
        total = b(losses, grads)
    np.testing.assert_allclose(tape2.gradient(total, theta).numpy(), want, rtol=1e-10)


def test_the_step_applies_configs_direction():
    """One compiled step with SGD(1): the variables move by exactly -g_c."""
    model = pinnlib.mlp(2, 2, 8, seed=0, dtype="float64")
    x = tf.constant(np.random.default_rng(0).uniform(-1, 1, size=(16, 2)))

    def terms():
        u = model(x)
        return [tf.reduce_mean((u - 1.0) ** 2), tf.reduce_mean((u + x[:, :1]) ** 2)]

    variables = model.trainable_variables
    with tf.GradientTape(persistent=True) as tape:
        losses = terms()
    grads = [[tape.gradient(L, v) for v in variables] for L in losses]
    want = flat(ConFIG(2, dtype="float64").direction(tf.stack(losses), grads))
    before = np.concatenate([v.numpy().ravel() for v in variables])
    optimizer = keras.optimizers.SGD(1.0)
    optimizer.build(variables)
    halted = tf.Variable(False)
    counter = tf.Variable(0, dtype=tf.int64)
    b = ConFIG(2, dtype="float64")
    step = tf.function(lambda: balanced_step(terms, variables, [b], optimizer, halted, counter))
    _, lambdas = step()
    after = np.concatenate([v.numpy().ravel() for v in variables])
    np.testing.assert_allclose(before - after, want, rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(lambdas.numpy(), b.lambdas.numpy())


# -- NTK traces against an explicit per-point loop ------------------------------------------------
def loop_traces(pde, model, points, names) -> np.ndarray:
    """Mean over points of |d r_i(x) / d theta|^2, one point at a time (a tape per point)."""
    variables = model.trainable_variables
    out = []
    for name in names:
        key = "interior" if name == "L_f" else "boundary"
        squares = []
        for k in range(points[key].shape[0]):
            one = {s: p[k : k + 1] for s, p in points.items()}
            with tf.GradientTape() as tape:
                r = pde.residuals(model, one, mode="tape")[name]
            g = tape.gradient(r, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            squares.append(sum(float(np.sum(np.square(gi.numpy()))) for gi in g))
        out.append(np.mean(squares))
    return np.array(out)


def tiny(seed=0):
    return pinnlib.mlp(2, 2, 6, seed=seed, dtype="float64")


def helmholtz_points(seed, n=6):
    gen = tf.random.Generator.from_seed(seed)
    return pinnlib.Helmholtz().sample(n, 8, gen, "float64")


@pytest.mark.parametrize("mode", ["tape", "forward"])
def test_kernel_traces_match_a_per_point_loop(mode):
    pde, model = pinnlib.Helmholtz(), tiny()
    points = helmholtz_points(1)

    def residuals():
        res = pde.residuals(model, points, mode=mode)
        return [res[name] for name in pde.term_names]

    got = kernel_traces(residuals, model.trainable_variables).numpy()
    want = loop_traces(pde, model, points, pde.term_names)
    np.testing.assert_allclose(got, want, rtol=1e-10)
    assert np.all(got > 0)


def test_ntk_weights_over_steps_match_numpy():
    """update_every=3, a=0.5: updates at steps 0, 3, 6 from the traces of that step; the
    weights stay in between while the model keeps changing."""
    pde, model = pinnlib.Helmholtz(), tiny(2)
    b = NTKWeights(2, update_every=3, points=4, a=0.5, dtype="float64")
    rng = np.random.default_rng(0)
    lam = np.ones(2)
    for step in range(8):
        points = helmholtz_points(10 + step)
        sub = kernel_points(points, 4)

        def residuals(sub=sub):
            res = pde.residuals(model, sub, mode="tape")
            return [res[name] for name in pde.term_names]

        got = b.update(
            tf.constant([1.0, 1.0], tf.float64),
            residuals=residuals,
            variables=model.trainable_variables,
        ).numpy()
        if step % 3 == 0:
            T = loop_traces(pde, model, sub, pde.term_names)
            lam = 0.5 * lam + 0.5 * T.sum() / T
            np.testing.assert_allclose(b.traces.numpy(), T, rtol=1e-10)
        np.testing.assert_allclose(got, lam, rtol=1e-10, err_msg=f"step {step}")
        for v in model.trainable_variables:  # the network moves every step
            v.assign_add(0.05 * rng.normal(size=v.shape))
    assert int(b.step.numpy()) == 8


def test_kernel_points_takes_evenly_spaced_rows():
    points = {"a": tf.reshape(tf.range(20.0), [10, 2]), "b": tf.ones([3, 2])}
    sub = kernel_points(points, 4)
    np.testing.assert_array_equal(sub["a"].numpy()[:, 0], [0.0, 4.0, 10.0, 14.0])  # rows 0,2,5,7
    assert sub["b"].shape == (3, 2)  # fewer rows than asked: all of them


def test_ntk_costs_nothing_between_updates_in_the_graph():
    """Between updates the residual function is not even called (it sits in tf.cond)."""
    calls = tf.Variable(0)
    b = NTKWeights(1, update_every=4, dtype="float64")
    theta = tf.Variable([1.0, 2.0], dtype=tf.float64)

    def residuals():
        calls.assign_add(1)
        return [theta * theta]

    step = tf.function(lambda: b.update([1.0], residuals=residuals, variables=[theta]))
    for _ in range(9):
        step()
    assert int(calls.numpy()) == 3  # steps 0, 4, 8
    np.testing.assert_allclose(b.traces.numpy(), [(4.0 + 16.0) / 2], rtol=1e-12)


# -- validation and refusals ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs,error,words",
    [
        (dict(update_every=0), ValueError, "update_every"),
        (dict(update_every=2.5), TypeError, "update_every"),
        (dict(points=0), ValueError, "points"),
        (dict(a=0.0), ValueError, "a must"),
        (dict(a=1.5), ValueError, "a must"),
    ],
)
def test_ntk_arguments_are_checked(kwargs, error, words):
    with pytest.raises(error, match=words):
        NTKWeights(2, **kwargs)


def test_ntk_update_needs_residuals_and_variables():
    b = NTKWeights(2)
    with pytest.raises(TypeError, match="residuals="):
        b.update([1.0, 2.0])
    with pytest.raises(ValueError, match="variables="):
        b.update([1.0, 2.0], residuals=lambda: [], variables=[])
    with pytest.raises(ValueError, match="grads"):
        ConFIG(2).update([1.0, 2.0])


def test_non_finite_losses_are_refused_with_the_term_named():
    theta = tf.Variable([1.0, 2.0])
    grads = [[tf.ones([2])], [tf.ones([2])]]
    config, ntk = ConFIG(2), NTKWeights(2, update_every=1)
    kernel = dict(residuals=lambda: [theta, 2 * theta], variables=[theta])
    with pytest.raises(FloatingPointError, match="ConFIG.update refused loss term 1"):
        config.update([1.0, float("nan")], grads)
    with pytest.raises(FloatingPointError, match="NTKWeights.update refused loss term 0"):
        ntk.update([float("inf"), 1.0], **kernel)
    with pytest.raises(FloatingPointError, match="gradients of loss term 0"):
        config.update([1.0, 1.0], [[tf.constant([np.nan, 1.0])], [tf.ones([2])]])
    assert int(config.step.numpy()) == int(ntk.step.numpy()) == 0  # nothing stored
    graph = tf.function(lambda losses: ntk.update(losses, **kernel))
    with pytest.raises(tf.errors.InvalidArgumentError, match="non-finite loss: term"):
        graph(tf.constant([1.0, float("nan")]))
    np.testing.assert_array_equal(ntk.traces.numpy(), [1.0, 1.0])


# -- state: config, checkpoint, resume ----------------------------------------------------------
@pytest.mark.parametrize(
    "balancer,names",
    [
        (ConFIG(3), ["cosines", "lambdas", "step"]),
        (NTKWeights(2, update_every=7, points=9, a=0.25), ["lambdas", "step", "traces"]),
    ],
    ids=["ConFIG", "NTKWeights"],
)
def test_config_and_state_variables(balancer, names):
    config = balancer.get_config()
    again = type(balancer).from_config(config)
    assert repr(again) == repr(balancer) and again.get_config() == config
    assert sorted(balancer.state_variables()) == names


@pytest.mark.parametrize(
    "make",
    [lambda: ConFIG(2), lambda: NTKWeights(2, update_every=3, points=8, a=0.5)],
    ids=["ConFIG", "NTKWeights"],
)
def test_resume_from_a_checkpoint_is_exact(tmp_path, make):
    def run(steps, folder):
        model = pinnlib.mlp(2, 2, 8, seed=0)
        return pinnlib.train(
            model, pinnlib.Helmholtz(), make(), steps=steps, seed=1, chunk=2,
            checkpoint_dir=folder, checkpoint_every=4, **SMALL,
        )  # fmt: skip

    whole = run(10, tmp_path / "whole")
    run(4, tmp_path / "parts")
    resumed = run(10, tmp_path / "parts")  # a fresh model and balancer continue from step 4
    np.testing.assert_array_equal(resumed.losses, whole.losses)
    np.testing.assert_array_equal(resumed.lambdas, whole.lambdas)
    assert np.ptp(whole.lambdas[:, 1]) > 0  # the weights moved


# -- the ways pinnlib trains ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "make",
    [lambda: ConFIG(2), lambda: NTKWeights(2, update_every=10, points=16)],
    ids=["ConFIG", "NTKWeights"],
)
def test_train_runs_and_gives_finite_errors(make):
    h = pinnlib.train(pinnlib.mlp(2, 2, 16, seed=0), pinnlib.Helmholtz(), make(), steps=50, seed=0,
                      **SMALL)  # fmt: skip
    assert np.all(np.isfinite(h.losses)) and np.all(np.isfinite(h.lambdas))
    assert np.isfinite(h.final_error) and len(h.step) == 50
    np.testing.assert_allclose(h.total, np.sum(h.losses * h.lambdas, axis=1))


def test_ntk_weights_change_only_at_updates_in_training():
    h = pinnlib.train(pinnlib.mlp(2, 2, 16, seed=0), pinnlib.Helmholtz(),
                      NTKWeights(2, update_every=5, points=8), steps=12, seed=0, **SMALL)  # fmt: skip
    changes = np.flatnonzero(np.any(np.diff(h.lambdas, axis=0) != 0, axis=1)) + 1
    assert set(changes) <= {5, 10} and len(changes) >= 1
    np.testing.assert_allclose(np.sum(1.0 / h.lambdas, axis=1), 1.0, rtol=1e-5)  # sum T_j / T_i


def test_xla_step_with_kirchhoff_ntk():
    h = pinnlib.train(pinnlib.mlp(2, 2, 8, seed=0), pinnlib.Kirchhoff(),
                      NTKWeights(3, update_every=2, points=4), steps=3, seed=0,
                      **{**SMALL, "jit_compile": True})  # fmt: skip
    assert np.all(np.isfinite(h.lambdas)) and not np.allclose(h.lambdas[0], 1.0)


@pytest.mark.parametrize(
    "make", [lambda: ConFIG(2), lambda: NTKWeights(2, update_every=2, points=8)],
    ids=["ConFIG", "NTKWeights"],
)  # fmt: skip
def test_keras_fit(make):
    b = make()
    model = pinnlib.PINNModel(pinnlib.mlp(2, 2, 8, seed=0), pinnlib.Helmholtz(), b,
                              n_interior=32, n_boundary=16, seed=0)  # fmt: skip
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=False)
    logs = model.fit(epochs=1, steps_per_epoch=3, verbose=0).history
    assert np.isfinite(logs["lambda_L_b"][-1]) and int(b.step.numpy()) == 3
    assert not np.allclose(b.lambdas.numpy(), 1.0)


def test_stacked_config_equals_separate_runs():
    seeds, options = [3, 4], dict(steps=6, **SMALL)
    alone = [
        pinnlib.train(
            pinnlib.mlp(2, 2, 8, seed=s), pinnlib.Helmholtz(), ConFIG(2), seed=s, **options
        )  # fmt: skip
        for s in seeds
    ]
    together = pinnlib.train_together(
        [pinnlib.mlp(2, 2, 8, seed=s) for s in seeds], pinnlib.Helmholtz(),
        [ConFIG(2), ConFIG(2)], seeds=seeds, stacked=True, **options,
    )  # fmt: skip
    assert together[0].info["stacked"] is True
    for a, t in zip(alone, together):
        np.testing.assert_allclose(t.lambdas, a.lambdas, rtol=1e-4)
        np.testing.assert_allclose(t.losses, a.losses, rtol=1e-4)


def test_ntk_in_train_together_is_grouped_and_stacking_is_refused():
    models = [pinnlib.mlp(2, 2, 8, seed=s) for s in (0, 1)]
    with pytest.raises(ValueError, match="stacked runs cannot use NTKWeights"):
        pinnlib.train_together(models, pinnlib.Helmholtz(), [NTKWeights(2), NTKWeights(2)],
                               steps=2, stacked=True, **SMALL)  # fmt: skip
    histories = pinnlib.train_together(
        models, pinnlib.Helmholtz(), [NTKWeights(2, points=8), ConFIG(2)], steps=2, seeds=[0, 1],
        **SMALL,
    )  # fmt: skip
    assert histories[0].info["stacked"] is False
    assert all(np.all(np.isfinite(h.lambdas)) for h in histories)


def test_ntk_under_tf_distribute_is_refused_saying_why():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        model, b = pinnlib.mlp(2, 2, 8, seed=0), NTKWeights(2)
    with pytest.raises(ValueError, match="NTKWeights cannot train under a tf.distribute"):
        pinnlib.Trainer(model, pinnlib.Helmholtz(), b, strategy=strategy, jit_compile=False)


def test_config_missing_gradient_counts_as_zeros():
    rng = np.random.default_rng(8)
    G = gradients(rng, 2)
    grads = as_grads(G)
    grads[0][1] = None  # term 0 does not depend on the second variable
    G[0, 20:] = 0.0
    direction = ConFIG(2, dtype="float64").direction([1.0, 1.0], grads)
    assert [d.shape for d in direction] == [(4, 5), (40,)]
    np.testing.assert_allclose(flat(direction), np_config(G), rtol=1e-9)
