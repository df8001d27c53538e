"""Tests of the balancers of issue 23, each against an independent NumPy re-derivation of its
source's formula (golden values over several steps, warm-up and update periods included), the
invariances that hold (and the one that does not), and checkpoint/resume of every new state.

* GradNorm trained by Adam (Chen et al. 2018, arXiv:1711.02257; the ReLoBRaLo authors' code):
  Keras' Adam written out in NumPy; scale-free steps; the old SGD form pins a weight to the
  floor where Adam does not.
* LRAnnealing's forms (Wang, Teng & Perdikaris 2021, arXiv:2001.04536): the published
  Algorithm 2.1 and the authors' Helmholtz code (weight matrices only, mean of layer means).
* GlobalGradNorm (Wang, Sankaran, Wang & Perdikaris 2023, arXiv:2308.08468; jaxpi).
* HomoscedasticUncertainty (Kendall, Gal & Cipolla 2018, arXiv:1705.07115; PhysicsNeMo-Sym's
  form): gradient, optimum ``s* = log L``, and training through every path pinnlib has.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import pinnlib
from pinnlib import GlobalGradNorm, GradNorm, HomoscedasticUncertainty, LRAnnealing, Poisson1D


def grads_of(rng, n, shapes=((3, 2), (2,), (2, 1), (1,)), scale=None, dtype=tf.float64):
    """Per-term gradient lists over an MLP-like variable list (kernel, bias, kernel, bias)."""
    out = []
    for i in range(n):
        s = 10 ** rng.uniform(-1, 1) if scale is None else scale[i]
        out.append([tf.constant(s * rng.normal(size=shape), dtype) for shape in shapes])
    return out


def numpy_of(grads):
    return [[g.numpy().astype(np.float64) for g in term] for term in grads]


# -- GradNorm with Adam ------------------------------------------------------------------------
def np_gradnorm_adam(losses_seq, grads_seq, asym, lr, shared, floor, eps=1e-12):
    """Chen et al.'s update with Keras' Adam (beta 0.9 / 0.999, epsilon 1e-7, bias-corrected)."""
    n = len(losses_seq[0])
    w, m, v, hits, out, L0 = np.ones(n), np.zeros(n), np.zeros(n), np.zeros(n, int), [], None
    for t, (losses, grads) in enumerate(zip(losses_seq, grads_seq), start=1):
        losses = np.asarray(losses, np.float64)
        L0 = losses.copy() if L0 is None else L0
        g = np.array([np.linalg.norm(term[shared]) for term in grads])
        G = w * g
        ratio = losses / (L0 + eps)
        r = ratio / (ratio.mean() + eps)
        d = np.sign(G - G.mean() * r**asym) * g
        m = 0.9 * m + 0.1 * d
        v = 0.999 * v + 0.001 * d**2
        w = w - lr * np.sqrt(1 - 0.999**t) / (1 - 0.9**t) * m / (np.sqrt(v) + 1e-7)
        hits += w < floor
        w = np.maximum(w, floor)
        w = n * w / w.sum()
        out.append(w.copy())
    return np.array(out), hits


@pytest.mark.parametrize("asym,lr,floor", [(1.5, 1e-3, 1e-3), (0.0, 0.05, 1e-3), (1.0, 0.4, 0.3)])
def test_gradnorm_adam_matches_numpy(asym, lr, floor):
    rng = np.random.default_rng(int(100 * lr + asym))
    n, steps = 3, 12
    losses = 10 ** rng.uniform(-1, 1, (steps, n))
    grads = [grads_of(rng, n) for _ in range(steps)]
    b = GradNorm(n, asymmetry=asym, learning_rate=lr, shared_variable=2, min_weight=floor,
                 dtype="float64")  # fmt: skip
    got = np.array([b.update(tf.constant(L), g).numpy() for L, g in zip(losses, grads)])
    want, hits = np_gradnorm_adam(losses, [numpy_of(g) for g in grads], asym, lr, 2, floor)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(b.floor_hits.numpy(), hits)
    if floor == 0.3:
        assert hits.sum() > 0  # the large rate does reach the floor: the counter is exercised


def test_gradnorm_defaults_name_the_sources():
    assert GradNorm(2).update_rule == "adam" and GradNorm(2).learning_rate == 1e-3
    assert GradNorm(2, update="sgd").learning_rate == 0.025  # pinnlib 0.2.0's
    with pytest.raises(ValueError, match="update must be one of"):
        GradNorm(2, update="adamw")
    config = GradNorm(2, update="sgd", asymmetry=0.5).get_config()
    assert GradNorm.from_config(config).get_config() == config and config["update"] == "sgd"


def constant_imbalance(steps, big):
    """Two terms, equal loss ratios (r = 1), gradient norms ``big`` and 1 on the shared one."""
    u = tf.constant([0.6, 0.8], tf.float64)  # unit norm
    return [tf.constant([big, 1.0], tf.float64)] * steps, [[[big * u], [u]]] * steps


def test_adam_gradnorm_is_not_pinned_where_sgd_was():
    # Magnitudes 1e4 and 1: plain descent at 0.025 steps w_0 by 250 (to the floor at once, and
    # every step after); Adam steps by about its learning rate whatever the magnitude.
    losses, grads = constant_imbalance(50, 1e4)
    kw = dict(asymmetry=1.5, shared_variable=0, dtype="float64")
    sgd, adam = GradNorm(2, update="sgd", **kw), GradNorm(2, **kw)
    for L, g in zip(losses, grads):
        sgd.update(L, g)
        lam = adam.update(L, g).numpy()
    assert sgd.floor_hits.numpy()[0] == 50 and sgd.lambdas.numpy()[0] < 0.01
    assert adam.floor_hits.numpy().tolist() == [0, 0]
    # 50 Adam steps of ~1e-3 against the big term (and the renormalisation): w_0 near 0.95.
    assert 0.9 < lam[0] < 1.0 and lam[1] > 1.0


def test_adam_gradnorm_steps_are_scale_free():
    # Multiplying every gradient norm by 1e3 leaves Adam's trajectory unchanged (up to its
    # epsilon, 1e-7 against moments of size >= 1): the step does not grow with the loss.
    a_l, a_g = constant_imbalance(20, 10.0)
    b_l, b_g = constant_imbalance(20, 10.0)
    b_g = [[[1e3 * t[0]] for t in g] for g in b_g]
    a, b = (
        GradNorm(2, shared_variable=0, dtype="float64"),
        GradNorm(2, shared_variable=0, dtype="float64"),
    )
    wa = [a.update(L, g).numpy() for L, g in zip(a_l, a_g)]
    wb = [b.update(L, g).numpy() for L, g in zip(b_l, b_g)]
    np.testing.assert_allclose(wa, wb, rtol=1e-7)


# -- LRAnnealing forms ---------------------------------------------------------------------------
def np_lra_authors_code(grads_seq, residual, a, every, eps=1e-12):
    """The authors' Helmholtz code: max over weight matrices of |grad L_r|, over the mean over
    layers of each weight matrix's mean |grad (lambda L_i)|."""
    n = len(grads_seq[0])
    lam, out = np.ones(n), []
    for step, grads in enumerate(grads_seq):
        if step % every == 0:
            kernels = [[g for g in term if g.ndim == 2] for term in grads]
            top = max(np.abs(g).max() for g in kernels[residual])
            means = np.array([np.mean([np.abs(g).mean() for g in k]) for k in kernels])
            lhat = top / (means * lam + eps)
            lhat[residual] = 1.0
            lam = (1 - a) * lam + a * lhat
        out.append(lam.copy())
    return np.array(out)


@pytest.mark.parametrize("residual,every", [(0, 10), (1, 3)])
def test_lra_authors_code_matches_numpy(residual, every):
    rng = np.random.default_rng(residual + every)
    n, steps = 3, 25
    grads = [grads_of(rng, n) for _ in range(steps)]
    b = LRAnnealing(n, residual_index=residual, update_every=every, form="authors_code",
                    dtype="float64")  # fmt: skip
    got = np.array([b.update(tf.ones([n]), g).numpy() for g in grads])
    want = np_lra_authors_code([numpy_of(g) for g in grads], residual, 0.1, every)
    np.testing.assert_allclose(got, want, rtol=1e-10)
    assert len({tuple(row) for row in got}) == len(range(0, steps, every))  # moves only when due


def test_lra_authors_code_ignores_biases_and_averages_layer_means():
    # Residual kernels hold |g| up to 4 (its bias 100 is ignored). Term 1: kernel means 1 and 3,
    # so the mean of layer means is 2 (the mean over all six kernel entries would be 1.67).
    k = lambda *v: tf.constant(np.reshape(v, (-1, 1)), tf.float64)  # noqa: E731
    b100 = tf.constant([100.0], tf.float64)
    grads = [[k(1, -4, 2), b100, k(0.5, 0.5, 0.5)], [k(1, 1, -1), b100, k(3, -3, 3)]]
    b = LRAnnealing(2, form="authors_code", dtype="float64")
    np.testing.assert_allclose(b.update([1.0, 1.0], grads).numpy(), [1.0, 0.9 + 0.1 * 4 / 2])
    # The published form reads every parameter: max 100, mean (3 + 100 + 9) / 7 = 16.
    p = LRAnnealing(2, form="published", dtype="float64")
    np.testing.assert_allclose(p.update([1.0, 1.0], grads).numpy(), [1.0, 0.9 + 0.1 * 100 / 16])


def test_lra_weighted_maps_onto_forms():
    assert LRAnnealing(2).form == "published"
    assert LRAnnealing(2, weighted=True).form == "published"
    assert LRAnnealing(2, weighted=False).form == "unweighted"
    assert LRAnnealing(2, form="authors_code").weighted is True
    assert LRAnnealing(2, weighted=True, form="published").form == "published"
    with pytest.raises(ValueError, match="weighted=False means form='unweighted'"):
        LRAnnealing(2, weighted=False, form="published")
    with pytest.raises(TypeError, match="weighted"):
        LRAnnealing(2, weighted="yes")
    with pytest.raises(ValueError, match="form must be one of"):
        LRAnnealing(2, form="paper text")
    with pytest.raises(ValueError, match="rank-2"):  # no weight matrix to read
        LRAnnealing(2, form="authors_code").update([1.0, 1.0], [[tf.ones([2])], [tf.ones([2])]])


def test_study_arms_of_the_first_edition_build_what_ran():
    from pinnlib import study

    config = study.load_config()
    built = {}
    for method in ("lra", "lra-code", "gradnorm"):
        spec = study._spec(config, study.Run("helmholtz", method, 0))
        built[method] = study._build(spec)[2]
    assert built["lra"].form == "unweighted"  # pinnlib 0.2.0's default, weighted=False
    assert built["lra-code"].form == "published"  # 0.2.0's weighted=True: Algorithm 2.1
    assert built["gradnorm"].update_rule == "sgd" and built["gradnorm"].learning_rate == 0.025
    # A method that names the new arguments gets them.
    assert study.first_edition_options("GradNorm", {"update": "adam"}) == {"update": "adam"}
    assert study.first_edition_options("LRAnnealing", {"form": "authors_code"}) == {
        "form": "authors_code"
    }


# -- GlobalGradNorm --------------------------------------------------------------------------------
def np_global_gradnorm(grads_seq, momentum, every, form, eps=1e-12):
    n = len(grads_seq[0])
    lam, out = np.ones(n), []
    for step, grads in enumerate(grads_seq):
        if step % every == 0:
            norms = np.array([np.sqrt(sum((g**2).sum() for g in term)) for term in grads])
            scale = norms.sum() if form == "paper" else norms.mean()
            lam = momentum * lam + (1 - momentum) * scale / (norms + eps)
        out.append(lam.copy())
    return np.array(out)


@pytest.mark.parametrize("form", ["paper", "jaxpi"])
@pytest.mark.parametrize("momentum,every", [(0.9, 4), (0.5, 1)])
def test_global_gradnorm_matches_numpy(form, momentum, every):
    rng = np.random.default_rng(every)
    n, steps = 3, 13
    grads = [grads_of(rng, n) for _ in range(steps)]
    b = GlobalGradNorm(n, momentum=momentum, update_every=every, form=form, dtype="float64")
    got = np.array([b.update(tf.ones([n]), g).numpy() for g in grads])
    want = np_global_gradnorm([numpy_of(g) for g in grads], momentum, every, form)
    np.testing.assert_allclose(got, want, rtol=1e-10)
    # The first update is at step 0, from weights one: 0.9 + 0.1 * lhat (not lhat alone).
    norms = np.array([np.sqrt(sum((g**2).sum() for g in t)) for t in numpy_of(grads[0])])
    total = norms.sum() if form == "paper" else norms.mean()
    np.testing.assert_allclose(got[0], momentum + (1 - momentum) * total / norms, rtol=1e-10)


def test_global_gradnorm_equalises_weighted_gradient_norms():
    # momentum 0, every step: lambda_i ||grad L_i|| = sum_j ||grad L_j|| for every term (paper).
    rng = np.random.default_rng(3)
    grads = grads_of(rng, 3, scale=[1e-3, 1.0, 1e4])
    b = GlobalGradNorm(3, momentum=0.0, update_every=1, dtype="float64")
    lam = b.update(tf.ones([3]), grads).numpy()
    norms = np.array([np.sqrt(sum((g**2).sum() for g in t)) for t in numpy_of(grads)])
    np.testing.assert_allclose(lam * norms, norms.sum(), rtol=1e-8)  # eps = 1e-12 in lhat


def test_global_gradnorm_rescaling():
    # All terms times c: every weight unchanged. One term times c: its weight changes (not a
    # units-invariant scheme, unlike ReLoBRaLo), exactly as lhat_i = sum_j n_j / n_i says.
    rng = np.random.default_rng(4)
    seq = [grads_of(rng, 2) for _ in range(5)]
    base = np.array(run_all(seq))
    scaled = np.array(run_all([[[1e3 * g for g in t] for t in s] for s in seq]))
    np.testing.assert_allclose(scaled, base, rtol=1e-10)
    one = np.array(run_all([[[1e3 * g for g in s[0]], s[1]] for s in seq]))
    assert not np.allclose(one, base, rtol=1e-3)


def run_all(seq):
    b = GlobalGradNorm(2, update_every=2, dtype="float64")
    return [b.update(tf.ones([2]), g).numpy() for g in seq]


@pytest.mark.parametrize(
    "kwargs,name",
    [({"momentum": 1.0}, "momentum"), ({"momentum": -0.1}, "momentum"),
     ({"update_every": 0}, "update_every"), ({"form": "sum"}, "form")],
)  # fmt: skip
def test_global_gradnorm_validation(kwargs, name):
    with pytest.raises(ValueError, match=name):
        GlobalGradNorm(2, **kwargs)


# -- HomoscedasticUncertainty --------------------------------------------------------------------
def test_uncertainty_total_gradient_and_weights():
    b = HomoscedasticUncertainty(3, dtype="float64")
    b.log_variances.assign([0.0, 1.0, -2.0])
    L = tf.Variable([2.0, 0.5, 3.0], dtype=tf.float64)
    with tf.GradientTape() as tape:
        total = b([L[0], L[1], L[2]])
    ds, dL = tape.gradient(total, [b.log_variances, L])
    s, Lv = np.array([0.0, 1.0, -2.0]), np.array([2.0, 0.5, 3.0])
    np.testing.assert_allclose(total.numpy(), np.sum(np.exp(-s) * Lv + s), rtol=1e-12)
    np.testing.assert_allclose(ds.numpy(), 1 - np.exp(-s) * Lv, rtol=1e-12)
    np.testing.assert_allclose(dL.numpy(), np.exp(-s), rtol=1e-12)
    np.testing.assert_allclose(b.lambdas.numpy(), np.exp(-s), rtol=1e-12)  # reported weights
    assert int(b.step.numpy()) == 1
    assert [v.name for v in b.trainable_variables] == ["log_variances:0"]


def test_uncertainty_optimum_is_log_of_the_loss():
    # d/ds (e^-s L + s) = 1 - e^-s L vanishes at s = log L, and the second derivative e^-s L
    # is positive: the optimum. Gradient descent on s alone (losses fixed) finds it.
    L = np.array([4.0, 0.25, 30.0])
    b = HomoscedasticUncertainty(3, dtype="float64")
    opt = keras.optimizers.Adam(0.05)
    opt.build([b.log_variances])
    for _ in range(1500):
        with tf.GradientTape() as tape:
            total = b.total(tf.constant(L))
        opt.apply(tape.gradient(total, [b.log_variances]), [b.log_variances])
    np.testing.assert_allclose(b.log_variances.numpy(), np.log(L), atol=1e-3)


def poisson_run(balancer, steps, seed=0, **kw):
    pde = Poisson1D()
    model = pinnlib.mlp(1, 2, 8, seed=seed, input_range=([0.0], [1.0]))
    h = pinnlib.train(model, pde, balancer, steps=steps, n_interior=32, n_boundary=2, seed=seed,
                      progress=False, jit_compile=False, **kw)  # fmt: skip
    return h, model


def test_uncertainty_trains_in_the_step():
    b = HomoscedasticUncertainty(2)
    h, _ = poisson_run(b, 3, learning_rate=1e-2)
    s = b.log_variances.numpy()
    # Adam's first step is lr * sign(gradient), gradient 1 - L_i (s = 0): s moves against it.
    assert np.all(np.abs(s) > 1e-3)
    np.testing.assert_allclose(h.lambdas[0], [1.0, 1.0])  # s = 0 at step 0
    np.testing.assert_allclose(
        h.lambdas[1], np.exp(1e-2 * np.sign(1 - h.losses[0])), rtol=1e-4
    )  # after one Adam step of ~lr against the gradient
    # The stored weights are the last step's, read before its optimizer step moved s.
    np.testing.assert_array_equal(b.lambdas.numpy(), h.lambdas[-1])


def test_uncertainty_resumes_from_a_checkpoint(tmp_path):
    full_b = HomoscedasticUncertainty(2)
    full, _ = poisson_run(full_b, 12)
    poisson_run(HomoscedasticUncertainty(2), 6, checkpoint_dir=tmp_path, checkpoint_every=6)
    b = HomoscedasticUncertainty(2)
    b.log_variances.assign([5.0, -5.0])  # must be overwritten from the checkpoint
    resumed, _ = poisson_run(b, 12, seed=0, checkpoint_dir=tmp_path, checkpoint_every=6)
    np.testing.assert_allclose(resumed.losses, full.losses, rtol=1e-5)
    np.testing.assert_allclose(resumed.lambdas, full.lambdas, rtol=1e-5)
    np.testing.assert_allclose(b.log_variances.numpy(), full_b.log_variances.numpy(), rtol=1e-5)


@pytest.mark.parametrize(
    "make",
    [lambda: GradNorm(2, shared_variable=0, learning_rate=0.1),
     lambda: GlobalGradNorm(2, update_every=2),
     lambda: LRAnnealing(2, update_every=2, form="authors_code")],
    ids=["GradNorm", "GlobalGradNorm", "LRAnnealing-authors_code"],
)  # fmt: skip
def test_new_state_round_trips_a_checkpoint(tmp_path, make):
    rng = np.random.default_rng(0)
    seq = [(10 ** rng.uniform(-1, 1, 2), grads_of(rng, 2, dtype=tf.float32)) for _ in range(10)]
    b = make()
    for L, g in seq[:5]:
        b.update(tf.constant(L, tf.float32), g)
    path = tf.train.Checkpoint(balancer=b).save(str(tmp_path / "ckpt"))
    want = [b.update(tf.constant(L, tf.float32), g).numpy() for L, g in seq[5:]]
    fresh = make()
    tf.train.Checkpoint(balancer=fresh).restore(path).assert_existing_objects_matched()
    got = [fresh.update(tf.constant(L, tf.float32), g).numpy() for L, g in seq[5:]]
    np.testing.assert_array_equal(got, want)
    for name, v in b.state_variables().items():
        np.testing.assert_array_equal(v.numpy(), fresh.state_variables()[name].numpy(), name)


def test_uncertainty_in_keras_fit_trains_and_restores(tmp_path):
    def make(seed):
        net = pinnlib.mlp(1, 2, 8, seed=seed, input_range=([0.0], [1.0]))
        m = pinnlib.PINNModel(net, Poisson1D(), HomoscedasticUncertainty(2), n_interior=32,
                              n_boundary=2, seed=seed)  # fmt: skip
        m.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False)
        return m

    first = make(0)
    first.fit(epochs=1, steps_per_epoch=3, verbose=0)
    s = first.balancer.log_variances.numpy()
    assert np.all(np.abs(s) > 1e-3)  # trained inside fit
    first.save_weights(tmp_path / "u.weights.h5")
    back = make(4)
    back.load_weights(tmp_path / "u.weights.h5")
    np.testing.assert_array_equal(back.balancer.log_variances.numpy(), s)
    for va, vb in zip(first.optimizer.variables, back.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(va), np.asarray(vb))
    first.fit(epochs=1, steps_per_epoch=2, verbose=0)
    back.fit(epochs=1, steps_per_epoch=2, verbose=0)
    np.testing.assert_allclose(
        back.balancer.log_variances.numpy(), first.balancer.log_variances.numpy(), rtol=1e-5
    )


def test_uncertainty_with_a_built_optimizer_is_refused():
    opt = keras.optimizers.Adam(1e-3)
    model = pinnlib.mlp(1, 2, 8, seed=0, input_range=([0.0], [1.0]))
    opt.build(model.trainable_variables)
    with pytest.raises(ValueError, match="trainable variables.*built already"):
        pinnlib.train(model, Poisson1D(), HomoscedasticUncertainty(2), steps=1, optimizer=opt,
                      progress=False, jit_compile=False)  # fmt: skip


@pytest.mark.parametrize("stacked", [True, False], ids=["stacked", "grouped"])
def test_uncertainty_together_equals_alone(stacked):
    pde = pinnlib.Helmholtz()
    kw = dict(n_interior=32, n_boundary=16, progress=False, jit_compile=False, learning_rate=1e-2)
    models = [pinnlib.mlp(2, 2, 8, seed=s) for s in (0, 1)]
    balancers = [HomoscedasticUncertainty(2) for _ in range(2)]
    group = pinnlib.train_together(models, pde, balancers, steps=6, seeds=[0, 1],
                                   stacked=stacked, **kw)  # fmt: skip
    for s, h, b in zip((0, 1), group, balancers):
        alone_b = HomoscedasticUncertainty(2)
        alone = pinnlib.train(pinnlib.mlp(2, 2, 8, seed=s), pde, alone_b, steps=6, seed=s, **kw)
        np.testing.assert_allclose(h.losses, alone.losses, rtol=1e-4)
        np.testing.assert_allclose(h.lambdas, alone.lambdas, rtol=1e-4)
        np.testing.assert_allclose(
            b.log_variances.numpy(), alone_b.log_variances.numpy(), rtol=1e-4
        )


def test_uncertainty_under_a_strategy_is_refused():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        balancer = HomoscedasticUncertainty(2)
        model = pinnlib.mlp(1, 2, 8, seed=0, input_range=([0.0], [1.0]))
    with pytest.raises(NotImplementedError, match="HomoscedasticUncertainty trains variables"):
        pinnlib.train(model, Poisson1D(), balancer, steps=1, n_interior=32, n_boundary=2,
                      strategy=strategy, progress=False, jit_compile=False)  # fmt: skip
