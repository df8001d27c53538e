"""Tests of pinnlib.train_together: several runs in one compiled step equal the runs alone."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import pinnlib
from pinnlib import Helmholtz, Kirchhoff, LRAnnealing, ReLoBRaLo, Sum

SMALL = dict(n_interior=64, n_boundary=32, eval_points=16, progress=False, jit_compile=False)


def tiny(pde, seed=0, name="mlp"):
    box = (list(pde.lower), list(pde.upper))
    return pinnlib.mlp(pde.dims, 2, 16, seed=seed, input_range=box, name=name)


def make_balancer(kind, pde, seed):
    return {
        "sum": lambda: Sum(pde.num_terms),
        "relobralo": lambda: ReLoBRaLo(pde.num_terms, seed=seed),
        "lra": lambda: LRAnnealing(pde.num_terms),  # needs per-term gradients
    }[kind]()


@pytest.mark.parametrize("pde", [Helmholtz(), Kirchhoff()], ids=["helmholtz", "kirchhoff"])
def test_together_equals_alone(pde):
    """Each run in the group computes what it computes alone: losses, weights, errors, models."""
    kinds, seeds, steps = ["sum", "relobralo", "lra"], [3, 4, 5], 12
    group_models = [tiny(pde, s) for s in seeds]
    group = pinnlib.train_together(
        group_models,
        pde,
        [make_balancer(k, pde, s) for k, s in zip(kinds, seeds)],
        steps=steps,
        seeds=seeds,
        learning_rate=1e-2,
        eval_every=4,
        **SMALL,
    )
    assert len(group) == 3
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
        assert h.info["trained_together"] == 3 and h.info["steps"] == steps
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
