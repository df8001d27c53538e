"""Tests of pinnlib.train_together: several runs in one compiled step equal the runs alone.

Fixtures (``small``, ``tiny``, ``blows_up``) are in conftest.py.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import pinnlib
from pinnlib import Burgers, GradNorm, Helmholtz, Kirchhoff, LRAnnealing, ReLoBRaLo, Sum
from pinnlib.derivatives import forward_derivatives
from pinnlib.stacked import StackedMLP, stackable

CLOSE = dict(rtol=1e-4)
WEIGHTS = dict(rtol=1e-4, atol=1e-6)


def make_balancer(kind, pde, seed):
    return {
        "sum": lambda: Sum(pde.num_terms),
        "relobralo": lambda: ReLoBRaLo(pde.num_terms, seed=seed),
        "lra": lambda: LRAnnealing(pde.num_terms),  # needs per-term gradients
        "gradnorm": lambda: GradNorm(pde.num_terms),  # gradients on the last kernel only
    }[kind]()


def assert_same_run(h, model, alone, alone_model):
    np.testing.assert_array_equal(h.step, alone.step)
    np.testing.assert_array_equal(h.eval_step, alone.eval_step)
    np.testing.assert_allclose(h.losses, alone.losses, **CLOSE)
    np.testing.assert_allclose(h.lambdas, alone.lambdas, **CLOSE)
    np.testing.assert_allclose(h.rel_l2, alone.rel_l2, **CLOSE)
    for w, a in zip(model.get_weights(), alone_model.get_weights()):
        np.testing.assert_allclose(w, a, **WEIGHTS)


@pytest.mark.parametrize("stacked", [True, False], ids=["stacked", "grouped"])
@pytest.mark.parametrize(
    "pde", [Helmholtz(), Kirchhoff(), Burgers()], ids=["helmholtz", "kirchhoff", "burgers"]
)
def test_together_equals_alone(pde, stacked, tiny, small):
    """Each run in the group computes what it computes alone: losses, weights, errors, models."""
    kinds, seeds, steps = ["sum", "relobralo", "lra", "gradnorm"], [3, 4, 5, 6], 12
    group_models = [tiny(pde, s) for s in seeds]
    group = pinnlib.train_together(
        group_models,
        pde,
        [make_balancer(k, pde, s) for k, s in zip(kinds, seeds)],
        steps=steps,
        seeds=seeds,
        learning_rate=1e-2,
        eval_every=4,
        stacked=stacked,
        **small,
    )
    assert len(group) == 4
    for kind, seed, h, model in zip(kinds, seeds, group, group_models):
        alone_model = tiny(pde, seed)
        alone = pinnlib.train(
            alone_model,
            pde,
            make_balancer(kind, pde, seed),
            steps=steps,
            seed=seed,
            learning_rate=1e-2,
            eval_every=4,
            **small,
        )
        assert_same_run(h, model, alone, alone_model)
        assert h.info["trained_together"] == 4 and h.info["steps"] == steps
        assert h.info["stacked"] is stacked
    # The runs really differ from one another (different seeds and balancers).
    assert not np.allclose(group[0].losses, group[1].losses)
    # One shared clock.
    np.testing.assert_array_equal(group[0].time, group[2].time)


def test_together_trains_and_leaves_models_trained(tiny, small):
    pde = Helmholtz()
    models = [tiny(pde, s) for s in range(2)]
    before = [m.get_weights() for m in models]
    hs = pinnlib.train_together(models, pde, steps=60, seeds=[0, 1], learning_rate=1e-2, **small)
    grid, _ = pde.grid(16)
    for h, m, b in zip(hs, models, before):
        assert h.total[-10:].mean() < h.total[:10].mean()
        assert not all(np.allclose(w, v) for w, v in zip(m.get_weights(), b))
        rel, _ = pinnlib.evaluate(m, grid, pde.exact(grid))
        assert rel == pytest.approx(h.rel_l2[-1], rel=1e-4)  # compiled vs eager evaluation


# -- resuming ---------------------------------------------------------------------------------
@pytest.mark.parametrize("stacked", [True, False], ids=["stacked", "grouped"])
def test_resume_equals_an_uninterrupted_group(tmp_path, stacked, tiny, small):
    pde, n, seeds = Helmholtz(), 8, [0, 1, 2]

    def group(steps, model_seeds, folder=None, **kw):
        models = [tiny(pde, s) for s in model_seeds]
        balancers = [ReLoBRaLo(2, seed=s, rho=0.5, alpha=0.9) for s in model_seeds]
        hs = pinnlib.train_together(
            models,
            pde,
            balancers,
            steps=steps,
            seeds=model_seeds,
            eval_every=4,
            stacked=stacked,
            checkpoint_dir=folder,
            **kw,
            **small,
        )
        return models, balancers, hs

    full_models, full_balancers, full = group(2 * n, seeds)
    _, _, half = group(n, seeds, tmp_path, checkpoint_every=4)
    assert sorted(p.name for p in tmp_path.glob("history_*.npz")) == [
        "history_0.npz",
        "history_1.npz",
        "history_2.npz",
    ]
    # Fresh networks, balancers and samplers with other seeds: all must come from the folder.
    # (The sampler seeds given here are ignored too: the generators' states are restored.)
    models, balancers, resumed = group(2 * n, [7, 8, 9], tmp_path, checkpoint_every=4)
    for i in range(3):
        np.testing.assert_array_equal(resumed[i].step, np.arange(2 * n))
        np.testing.assert_array_equal(resumed[i].losses[:n], half[i].losses)
        assert_same_run(resumed[i], models[i], full[i], full_models[i])
        np.testing.assert_allclose(
            balancers[i].lambdas.numpy(), full_balancers[i].lambdas.numpy(), **CLOSE
        )
        assert int(balancers[i].step.numpy()) == 2 * n
        assert resumed[i].info["stacked"] is stacked


def test_a_checkpoint_of_another_layout_is_refused(tmp_path, tiny, small):
    pde = Helmholtz()
    pinnlib.train_together(
        [tiny(pde, s) for s in range(2)], pde, steps=2, checkpoint_dir=tmp_path, **small
    )
    with pytest.raises(ValueError, match="belongs to other runs"):
        pinnlib.train_together(
            [tiny(pde, s) for s in range(2)],
            pde,
            steps=4,
            stacked=False,
            checkpoint_dir=tmp_path,
            **small,
        )


# -- optimizers ---------------------------------------------------------------------------------
@pytest.mark.parametrize("stacked", [True, False], ids=["stacked", "grouped"])
def test_custom_optimizer_equals_alone(stacked, tiny, small):
    pde, seeds, steps = Helmholtz(), [0, 1], 10

    def sgd():
        return keras.optimizers.SGD(1e-2, momentum=0.9)

    models = [tiny(pde, s) for s in seeds]
    balancers = [ReLoBRaLo(2, seed=s) for s in seeds]
    hs = pinnlib.train_together(
        models, pde, balancers, steps=steps, seeds=seeds, optimizer=sgd, stacked=stacked, **small
    )
    for seed, h, model in zip(seeds, hs, models):
        alone_model = tiny(pde, seed)
        alone = pinnlib.train(
            alone_model,
            pde,
            ReLoBRaLo(2, seed=seed),
            steps=steps,
            seed=seed,
            optimizer=sgd(),
            **small,
        )
        assert_same_run(h, model, alone, alone_model)
        assert h.info["stacked"] is stacked
    # SGD with momentum trains differently from the default Adam.
    adam = pinnlib.train(tiny(pde, 0), pde, ReLoBRaLo(2, seed=0), steps=steps, seed=0, **small)
    assert not np.allclose(adam.losses[1:], hs[0].losses[1:], rtol=1e-3)


def test_each_run_gets_its_own_optimizer(tiny, small):
    pde = Helmholtz()
    made = []

    def factory():
        made.append(keras.optimizers.Adam(1e-3))
        return made[-1]

    models = [tiny(pde, 0), pinnlib.mlp(2, 3, 8, seed=1)]  # different sizes: grouped
    hs = pinnlib.train_together(models, pde, steps=2, optimizer=factory, **small)
    assert len(made) == 2 and made[0] is not made[1]
    assert all(int(o.iterations.numpy()) == 2 for o in made)
    assert not any(h.info["stacked"] for h in hs)
    # Stacked runs share one optimizer (elementwise, so the same as one per run): one call.
    made.clear()
    hs = pinnlib.train_together(
        [tiny(pde, s) for s in range(3)], pde, steps=2, optimizer=factory, **small
    )
    assert len(made) == 1 and all(h.info["stacked"] for h in hs)


def test_an_optimizer_that_mixes_runs_is_not_stacked(tiny, small):
    pde = Helmholtz()
    clipped = lambda: keras.optimizers.Adam(1e-3, global_clipnorm=1.0)  # a norm over all runs
    hs = pinnlib.train_together(
        [tiny(pde, s) for s in range(2)], pde, steps=2, optimizer=clipped, **small
    )
    assert not any(h.info["stacked"] for h in hs)
    with pytest.raises(ValueError, match="elementwise"):
        pinnlib.train_together(
            [tiny(pde, s) for s in range(2)], pde, steps=2, optimizer=clipped, stacked=True, **small
        )


# -- failures -----------------------------------------------------------------------------------
def test_a_failing_run_stops_the_group_and_names_itself(tiny, small, blows_up):
    bad = 6
    pde = blows_up(bad, name="second")
    models = [tiny(pde, 0, name="first"), tiny(pde, 1, name="second")]
    with pytest.raises(FloatingPointError, match=rf"run 1: loss term 'L_b'.*inf.*step {bad}") as e:
        pinnlib.train_together(models, pde, steps=20, seeds=[0, 1], chunk=4, **small)
    assert isinstance(e.value, pinnlib.NonFiniteLossError)
    assert (e.value.run, e.value.step, e.value.term) == (1, bad, "L_b")
    first, second = e.value.histories
    assert e.value.history is second
    np.testing.assert_array_equal(second.step, np.arange(bad))
    assert np.all(np.isfinite(second.losses))
    assert len(first.step) >= bad and np.all(np.isfinite(first.losses))
    assert all(np.all(np.isfinite(w)) for w in models[1].get_weights())


def test_a_failing_stacked_run_stops_all_and_names_itself(tiny, small, blows_up):
    bad = 5
    pde = blows_up(bad, which=2)
    models = [tiny(pde, s) for s in range(3)]
    with pytest.raises(FloatingPointError, match=rf"run 2: loss term 'L_b'.*inf.*step {bad}") as e:
        pinnlib.train_together(
            models, pde, steps=20, seeds=[0, 1, 2], chunk=4, stacked=True, **small
        )
    assert (e.value.run, e.value.step) == (2, bad)
    for h in e.value.histories:
        np.testing.assert_array_equal(h.step, np.arange(bad))
        assert np.all(np.isfinite(h.losses))
    assert all(np.all(np.isfinite(w)) for m in models for w in m.get_weights())


def test_validation(tiny, small):
    pde = Helmholtz()
    m1, m2 = tiny(pde, 0), tiny(pde, 1)
    with pytest.raises(ValueError, match="at least one model"):
        pinnlib.train_together([], pde, steps=1, **small)
    with pytest.raises(ValueError, match="2 models but 1 balancers"):
        pinnlib.train_together([m1, m2], pde, [Sum(2)], steps=1, **small)
    with pytest.raises(ValueError, match="2 models but 3 seeds"):
        pinnlib.train_together([m1, m2], pde, steps=1, seeds=[0, 1, 2], **small)
    with pytest.raises(ValueError, match="its own model"):
        pinnlib.train_together([m1, m1], pde, steps=1, **small)
    shared = ReLoBRaLo(2)
    with pytest.raises(ValueError, match="its own balancer"):
        pinnlib.train_together([m1, m2], pde, [shared, shared], steps=1, **small)
    with pytest.raises(ValueError, match="balancer has 3 terms"):
        pinnlib.train_together([m1, m2], pde, [Sum(3), Sum(2)], steps=1, **small)
    with pytest.raises(ValueError, match="steps must be an integer"):
        pinnlib.train_together([m1, m2], pde, steps=-1, **small)
    one = keras.optimizers.Adam()
    with pytest.raises(TypeError, match="optimizer must be a function"):
        pinnlib.train_together([m1, m2], pde, steps=1, optimizer=one, **small)
    with pytest.raises(ValueError, match="its own optimizer"):
        pinnlib.train_together(
            [m1, m2], pde, steps=1, optimizer=lambda: one, stacked=False, **small
        )


# -- stacks -------------------------------------------------------------------------------------
def test_stack_computes_what_its_members_compute():
    box = ([0.0, -1.0], [10.0, 3.0])
    models = [
        pinnlib.mlp(2, 3, 12, seed=s, dtype="float64", input_range=box, output_scale=0.5)
        for s in range(3)
    ]
    stack = StackedMLP(models)
    x = tf.constant(np.random.default_rng(0).uniform([0, -1], [10, 3], (3, 30, 2)))
    values = stack(x).numpy()
    wanted = [(1, 0), (2, 0), (0, 2), (1, 1), (4, 0), (2, 2), (0, 4)]
    d_stack = forward_derivatives(stack, x, wanted)
    u_stack, lap_stack = pinnlib.laplacian(stack, x)
    for s, m in enumerate(models):
        np.testing.assert_allclose(values[s], m(x[s]).numpy(), rtol=1e-12, atol=1e-14)
        d = forward_derivatives(m, x[s], wanted)
        for a in wanted:
            scale = np.max(np.abs(d[a].numpy()))
            assert np.max(np.abs(d_stack[a][s].numpy() - d[a].numpy())) <= 1e-10 * scale
        u, lap = pinnlib.laplacian(m, x[s])
        np.testing.assert_allclose(lap_stack[s].numpy(), lap.numpy(), rtol=1e-10, atol=1e-12)
    # Trained weights go back to the members.
    stack.layers[-2].bias.assign_add(tf.ones_like(stack.layers[-2].bias))
    before = models[1].layers[-2].bias.numpy()
    stack.write_back()
    np.testing.assert_allclose(models[1].layers[-2].bias.numpy(), before + 1.0)


def test_stack_checks():
    a, b = pinnlib.mlp(2, 2, 8, seed=0), pinnlib.mlp(2, 2, 8, seed=1)
    assert stackable([a, b])
    assert not stackable([a, pinnlib.mlp(2, 2, 9, seed=1)])  # width
    assert not stackable([a, pinnlib.mlp(2, 2, 8, activation="sin")])
    assert not stackable([a, pinnlib.mlp(2, 2, 8, input_range=([0, 0], [2, 2]))])
    assert not stackable([a, pinnlib.mlp(2, 2, 8, dtype="float64")])
    with pytest.raises(ValueError, match="one configuration"):
        StackedMLP([a, pinnlib.mlp(2, 3, 8)])
    stack = StackedMLP([a, b])
    with pytest.raises(ValueError, match=r"\(S, N, d\)"):
        pinnlib.laplacian(stack, tf.zeros([5, 2]))
    with pytest.raises(ValueError, match="forward mode only"):
        pinnlib.tape_derivatives(stack, tf.zeros([2, 5, 2]), [(2, 0)])
    with pytest.raises(ValueError, match="forward mode only"):
        pinnlib.laplacian(stack, tf.zeros([2, 5, 2]), mode="tape")


class ScaledHelmholtz(Helmholtz):
    """A subclass that changes parameters only: it keeps Helmholtz's promise to stack."""

    def __init__(self):
        super().__init__(k=2.0)


class OwnResiduals(Helmholtz):
    """New residual code not written for stacks: the class declares it."""

    supports_stacking = False

    def residuals(self, model, points, mode="auto"):
        return super().residuals(model, points, mode=mode)


class OwnStackableResiduals(OwnResiduals):
    supports_stacking = True


class InheritsTheDeclaration(Helmholtz):
    """Overrides the residuals without a word on stacking: the parent's declaration holds
    (nothing is inferred from which methods a class overrides)."""

    def residuals(self, model, points, mode="auto"):
        return super().residuals(model, points, mode=mode)


def test_stacking_follows_the_pde_flag(tiny, small):
    assert all(p.supports_stacking for p in (Helmholtz(), Kirchhoff(), Burgers()))
    assert pinnlib.Poisson1D.supports_stacking and not pinnlib.PDE.supports_stacking
    for pde, expected in [
        (Helmholtz(), True),
        (ScaledHelmholtz(), True),
        (OwnResiduals(), False),
        (OwnStackableResiduals(), True),
        (InheritsTheDeclaration(), True),
    ]:
        assert pde.supports_stacking is expected
        hs = pinnlib.train_together([tiny(pde, s) for s in range(2)], pde, steps=2, **small)
        assert all(h.info["stacked"] is expected for h in hs), type(pde).__name__
    # Differently sized networks are grouped.
    pde = Helmholtz()
    mixed = [tiny(pde, 0), pinnlib.mlp(2, 3, 8, seed=1)]
    hs = pinnlib.train_together(mixed, pde, steps=2, **small)
    assert not any(h.info["stacked"] for h in hs)
    with pytest.raises(ValueError, match="need forward mode"):
        pinnlib.train_together(
            [tiny(pde, s) for s in range(2)],
            pde,
            steps=1,
            stacked=True,
            derivative_mode="tape",
            **small,
        )
