"""Tests of pinnlib.train_together: several runs in one compiled step equal the runs alone."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import pinnlib
from pinnlib import Burgers, GradNorm, Helmholtz, Kirchhoff, LRAnnealing, ReLoBRaLo, Sum
from pinnlib.derivatives import forward_derivatives
from pinnlib.stacked import StackedMLP, stackable

SMALL = dict(n_interior=64, n_boundary=32, eval_points=16, progress=False, jit_compile=False)


def tiny(pde, seed=0, name="mlp"):
    box = (list(pde.lower), list(pde.upper))
    return pinnlib.mlp(pde.dims, 2, 16, seed=seed, input_range=box, name=name)


def make_balancer(kind, pde, seed):
    return {
        "sum": lambda: Sum(pde.num_terms),
        "relobralo": lambda: ReLoBRaLo(pde.num_terms, seed=seed),
        "lra": lambda: LRAnnealing(pde.num_terms),  # needs per-term gradients
        "gradnorm": lambda: GradNorm(pde.num_terms),  # gradients on the last kernel only
    }[kind]()


@pytest.mark.parametrize("stacked", [True, False], ids=["stacked", "grouped"])
@pytest.mark.parametrize(
    "pde", [Helmholtz(), Kirchhoff(), Burgers()], ids=["helmholtz", "kirchhoff", "burgers"]
)
def test_together_equals_alone(pde, stacked):
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
        **SMALL,
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
            **SMALL,
        )
        np.testing.assert_array_equal(h.step, alone.step)
        np.testing.assert_array_equal(h.eval_step, alone.eval_step)
        np.testing.assert_allclose(h.losses, alone.losses, rtol=1e-4)
        np.testing.assert_allclose(h.lambdas, alone.lambdas, rtol=1e-4)
        np.testing.assert_allclose(h.rel_l2, alone.rel_l2, rtol=1e-4)
        for w, a in zip(model.get_weights(), alone_model.get_weights()):
            np.testing.assert_allclose(w, a, rtol=1e-4, atol=1e-6)
        assert h.info["trained_together"] == 4 and h.info["steps"] == steps
        assert h.info["stacked"] is stacked
    # The runs really differ from one another (different seeds and balancers).
    assert not np.allclose(group[0].losses, group[1].losses)
    # One shared clock.
    np.testing.assert_array_equal(group[0].time, group[2].time)


def test_together_trains_and_leaves_models_trained():
    pde = Helmholtz()
    models = [tiny(pde, s) for s in range(2)]
    before = [m.get_weights() for m in models]
    hs = pinnlib.train_together(models, pde, steps=60, seeds=[0, 1], learning_rate=1e-2, **SMALL)
    for h, m, b in zip(hs, models, before):
        assert h.total[-10:].mean() < h.total[:10].mean()
        assert not all(np.allclose(w, v) for w, v in zip(m.get_weights(), b))
        rel, _ = pinnlib.evaluate(m, *_grid_and_exact(pde))
        assert rel == pytest.approx(h.rel_l2[-1], rel=1e-6)


def _grid_and_exact(pde):
    grid, _ = pde.grid(16)
    return grid, pde.exact(grid)


class BlowsUpFor(Helmholtz):
    """Helmholtz whose edge residual turns infinite at one step, for one named model only."""

    def __init__(self, name, bad_step):
        super().__init__()
        self.name, self.bad_step = name, bad_step
        self.calls = tf.Variable(0, dtype=tf.int64, trainable=False)

    def residuals(self, model, points, mode="auto"):
        res = super().residuals(model, points, mode=mode)
        if model.name == self.name:
            call = self.calls.assign_add(1) - 1
            inf = tf.constant(np.inf, res["L_b"].dtype)
            res["L_b"] = res["L_b"] + tf.where(call == self.bad_step, inf, tf.zeros_like(inf))
        return res


def test_a_failing_run_stops_the_group_and_names_itself():
    bad = 6
    pde = BlowsUpFor("second", bad)
    models = [tiny(pde, 0, "first"), tiny(pde, 1, "second")]
    with pytest.raises(FloatingPointError, match=rf"run 1: loss term 'L_b'.*inf.*step {bad}") as e:
        pinnlib.train_together(models, pde, steps=20, seeds=[0, 1], chunk=4, **SMALL)
    first, second = e.value.histories
    np.testing.assert_array_equal(second.step, np.arange(bad))
    assert np.all(np.isfinite(second.losses))
    assert len(first.step) >= bad and np.all(np.isfinite(first.losses))
    assert all(np.all(np.isfinite(w)) for w in models[1].get_weights())


def test_validation():
    pde = Helmholtz()
    m1, m2 = tiny(pde, 0), tiny(pde, 1)
    with pytest.raises(ValueError, match="at least one model"):
        pinnlib.train_together([], pde, steps=1, **SMALL)
    with pytest.raises(ValueError, match="2 models but 1 balancers"):
        pinnlib.train_together([m1, m2], pde, [Sum(2)], steps=1, **SMALL)
    with pytest.raises(ValueError, match="2 models but 3 seeds"):
        pinnlib.train_together([m1, m2], pde, steps=1, seeds=[0, 1, 2], **SMALL)
    with pytest.raises(ValueError, match="its own model"):
        pinnlib.train_together([m1, m1], pde, steps=1, **SMALL)
    shared = ReLoBRaLo(2)
    with pytest.raises(ValueError, match="its own balancer"):
        pinnlib.train_together([m1, m2], pde, [shared, shared], steps=1, **SMALL)
    with pytest.raises(ValueError, match="balancer has 3 terms"):
        pinnlib.train_together([m1, m2], pde, [Sum(3), Sum(2)], steps=1, **SMALL)
    with pytest.raises(ValueError, match="steps must be an integer"):
        pinnlib.train_together([m1, m2], pde, steps=-1, **SMALL)


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


def test_auto_stacks_pinnlib_pdes_only():
    pde = Helmholtz()
    hs = pinnlib.train_together([tiny(pde, s) for s in range(2)], pde, steps=2, **SMALL)
    assert all(h.info["stacked"] for h in hs)
    # A subclass with its own residuals is grouped, not stacked, unless asked.
    custom = BlowsUpFor("nobody", 10**6)
    hs = pinnlib.train_together([tiny(custom, s) for s in range(2)], custom, steps=2, **SMALL)
    assert not any(h.info["stacked"] for h in hs)
    # Differently sized networks are grouped.
    mixed = [tiny(pde, 0), pinnlib.mlp(2, 3, 8, seed=1)]
    hs = pinnlib.train_together(mixed, pde, steps=2, **SMALL)
    assert not any(h.info["stacked"] for h in hs)
    with pytest.raises(ValueError, match="need forward mode"):
        pinnlib.train_together(
            [tiny(pde, s) for s in range(2)],
            pde,
            steps=1,
            stacked=True,
            derivative_mode="tape",
            **SMALL,
        )


class BlowsUpInStack(Helmholtz):
    """Stack-aware Helmholtz whose edge residual of network ``which`` turns infinite once."""

    def __init__(self, which, bad_step):
        super().__init__()
        self.which, self.bad_step = which, bad_step
        self.calls = tf.Variable(0, dtype=tf.int64, trainable=False)

    def residuals(self, model, points, mode="auto"):
        res = super().residuals(model, points, mode=mode)
        call = self.calls.assign_add(1) - 1
        hit = tf.one_hot(self.which, model.stack_size, dtype=res["L_b"].dtype)[:, None, None]
        inf = tf.where(call == self.bad_step, np.inf * hit, tf.zeros_like(hit))
        res["L_b"] = res["L_b"] + tf.where(tf.math.is_nan(inf), tf.zeros_like(inf), inf)
        return res


def test_a_failing_stacked_run_stops_all_and_names_itself():
    bad = 5
    pde = BlowsUpInStack(2, bad)
    models = [tiny(pde, s) for s in range(3)]
    with pytest.raises(FloatingPointError, match=rf"run 2: loss term 'L_b'.*inf.*step {bad}") as e:
        pinnlib.train_together(
            models, pde, steps=20, seeds=[0, 1, 2], chunk=4, stacked=True, **SMALL
        )
    for h in e.value.histories:
        np.testing.assert_array_equal(h.step, np.arange(bad))
        assert np.all(np.isfinite(h.losses))
    assert all(np.all(np.isfinite(w)) for m in models for w in m.get_weights())
