"""The PyTorch port (pinnlib.ports.torch_balancing) against the shared golden cases.

Same NumPy rules and inputs as the TensorFlow balancers (tests/golden_balancers.py). PyTorch
is part of the ``test`` extra: if it is missing, the import below fails this file (it is not
skipped). ReLoBRaLo's lookbacks are replayed from the port's generator: a
``torch.Generator`` seeded with the balancer's seed, one ``torch.rand(())`` per step.
"""

from __future__ import annotations

import io

import golden_balancers as golden
import numpy as np
import pytest
import torch

from pinnlib.ports import torch_balancing as tb

F64 = {"rtol": 1e-10, "atol": 1e-12}
F32 = {"rtol": 2e-5, "atol": 1e-6}
DTYPES = [(torch.float64, F64), (torch.float32, F32)]


def run(balancer, losses, grads=None) -> np.ndarray:
    out = []
    for t, row in enumerate(losses):
        step_grads = None
        if grads is not None:
            step_grads = [[torch.as_tensor(g) for g in term] for term in grads[t]]
        out.append(balancer.update(torch.as_tensor(row), step_grads).double().numpy())
    return np.array(out)


def torch_draws(seed: int, steps: int) -> np.ndarray:
    generator = torch.Generator().manual_seed(seed)
    return np.array([torch.rand((), generator=generator).item() for _ in range(steps)])


def relobralo(dtype=torch.float64, **overrides):
    kwargs = {**golden.RELOBRALO, "seed": golden.SEED, **overrides}
    return tb.ReLoBRaLo(golden.NUM_TERMS, dtype=dtype, **kwargs)


@pytest.mark.parametrize("dtype, tol", DTYPES)
def test_sum_fixed_softadapt(dtype, tol):
    np.testing.assert_array_equal(
        run(tb.Sum(golden.NUM_TERMS, dtype=dtype), golden.LOSSES), golden.sum_weights(golden.LOSSES)
    )
    np.testing.assert_allclose(
        run(tb.Fixed(golden.FIXED_WEIGHTS, dtype=dtype), golden.LOSSES),
        golden.fixed_weights(golden.LOSSES, golden.FIXED_WEIGHTS),
        **tol,
    )
    got = run(tb.SoftAdapt(golden.NUM_TERMS, **golden.SOFTADAPT, dtype=dtype), golden.LOSSES)
    np.testing.assert_allclose(got, golden.softadapt(golden.LOSSES, **golden.SOFTADAPT), **tol)


@pytest.mark.parametrize("dtype, tol", DTYPES)
def test_relobralo_golden(dtype, tol):
    draws = torch_draws(golden.SEED, golden.NUM_STEPS)
    looked_back = draws[2:] >= golden.RELOBRALO["rho"]
    assert looked_back.any() and not looked_back.all(), "the case must mix lookbacks and not"
    want = golden.relobralo(golden.LOSSES, draws, **golden.RELOBRALO)
    np.testing.assert_allclose(run(relobralo(dtype), golden.LOSSES), want, **tol)


@pytest.mark.parametrize(
    "make", [lambda: relobralo(eps=0.0), lambda: tb.SoftAdapt(3, eps=0.0, dtype=torch.float64)]
)
def test_scale_invariance(make):
    """Multiplying each term by its own constant (a change of units) moves no weight."""
    scaled = golden.LOSSES * np.array([1e-3, 250.0, 7.0])
    np.testing.assert_allclose(run(make(), scaled), run(make(), golden.LOSSES), rtol=1e-12)


def test_defaults():
    """The same defaults as the TensorFlow balancers (golden.DEFAULTS)."""
    lra = tb.LRAnnealing(golden.NUM_TERMS)
    for name, value in golden.DEFAULTS["LRAnnealing"].items():
        assert getattr(lra, name) == value, name
    gradnorm = tb.GradNorm(golden.NUM_TERMS)
    for name, value in golden.DEFAULTS["GradNorm"].items():
        assert getattr(gradnorm, "update_rule" if name == "update" else name) == value, name
    for update, rate in golden.GRADNORM_LEARNING_RATES.items():
        assert tb.GradNorm(golden.NUM_TERMS, update=update).learning_rate == rate
    assert tb.GradNorm.ADAM == golden.ADAM
    ggn = tb.GlobalGradNorm(golden.NUM_TERMS)
    for name, value in golden.DEFAULTS["GlobalGradNorm"].items():
        assert getattr(ggn, name) == value, name


@pytest.mark.parametrize("case", golden.LR_ANNEALING_CASES + [{}], ids=str)
def test_lr_annealing_golden(case):
    grads = golden.gradients()
    got = run(tb.LRAnnealing(golden.NUM_TERMS, **case, dtype=torch.float64), golden.LOSSES, grads)
    np.testing.assert_allclose(got, golden.lr_annealing_golden(grads, case), **F64)


def test_lr_annealing_weighted_maps_onto_forms():
    assert tb.LRAnnealing(2, weighted=True).form == "published"
    assert tb.LRAnnealing(2, weighted=False).form == "unweighted"
    with pytest.raises(ValueError, match="weighted=False means form='unweighted'"):
        tb.LRAnnealing(2, weighted=False, form="published")
    with pytest.raises(ValueError, match="form must be one of"):
        tb.LRAnnealing(2, form="paper")
    with pytest.raises(ValueError, match="ndim == 2"):  # no weight matrix to read
        tb.LRAnnealing(2, form="authors_code").update(
            torch.ones(2), [[torch.ones(2)], [torch.ones(2)]]
        )


@pytest.mark.parametrize("case", golden.GLOBAL_GRAD_NORM_CASES + [{}], ids=str)
def test_global_grad_norm_golden(case):
    grads = golden.gradients()
    balancer = tb.GlobalGradNorm(golden.NUM_TERMS, **case, dtype=torch.float64)
    want = golden.global_grad_norm_golden(grads, case)
    np.testing.assert_allclose(run(balancer, golden.LOSSES, grads), want, **F64)


@pytest.mark.parametrize("case", golden.GRADNORM_CASES + [{}, {"update": "sgd"}], ids=str)
def test_gradnorm_golden(case):
    grads = golden.gradients()
    balancer = tb.GradNorm(golden.NUM_TERMS, **case, dtype=torch.float64)
    want, hits = golden.gradnorm_golden(golden.LOSSES, grads, case)
    np.testing.assert_allclose(run(balancer, golden.LOSSES, grads), want, **F64)
    np.testing.assert_array_equal(balancer.floor_hits.numpy(), hits)


@pytest.mark.parametrize("point", range(len(golden.UNCERTAINTY_POINTS)))
def test_homoscedastic_uncertainty_total_and_gradients(point):
    losses, s = golden.UNCERTAINTY_POINTS[point]
    module = tb.HomoscedasticUncertainty(golden.NUM_TERMS, dtype=torch.float64)
    with torch.no_grad():
        module.log_variances.copy_(torch.as_tensor(s, dtype=torch.float64))
    L = torch.tensor(losses, dtype=torch.float64, requires_grad=True)
    total = module(L)
    total.backward()
    want_total, want_ds, want_dL = golden.homoscedastic_uncertainty(losses, s)
    np.testing.assert_allclose(total.item(), want_total, **F64)
    np.testing.assert_allclose(module.log_variances.grad.numpy(), want_ds, **F64)
    np.testing.assert_allclose(L.grad.numpy(), want_dL, **F64)
    np.testing.assert_allclose(module.lambdas.numpy(), want_dL, **F64)
    assert int(module.step) == 1
    assert [name for name, _ in module.named_parameters()] == ["log_variances"]


def test_homoscedastic_uncertainty_trained_by_sgd():
    """exp(-s) L + s trained by torch.optim.SGD gives the NumPy gradient-descent weights."""
    module = tb.HomoscedasticUncertainty(golden.NUM_TERMS, dtype=torch.float64)
    optimizer = torch.optim.SGD(module.parameters(), lr=golden.UNCERTAINTY_LR)
    weights, totals = [], []
    for row in golden.LOSSES:
        optimizer.zero_grad()
        total = module(torch.as_tensor(row))
        weights.append(module.lambdas.numpy().copy())  # read before the step moves s
        total.backward()
        optimizer.step()
        totals.append(total.item())
    want_w, want_t = golden.uncertainty_sgd(golden.LOSSES, golden.UNCERTAINTY_LR)
    np.testing.assert_allclose(np.array(weights), want_w, **F64)
    np.testing.assert_allclose(np.array(totals), want_t, **F64)


def make_all():
    return [
        relobralo(),
        tb.SoftAdapt(3, dtype=torch.float64),
        tb.LRAnnealing(3, update_every=3, dtype=torch.float64),
        tb.LRAnnealing(3, update_every=3, form="authors_code", dtype=torch.float64),
        tb.GlobalGradNorm(3, update_every=2, form="jaxpi", dtype=torch.float64),
        tb.GradNorm(3, dtype=torch.float64),
        tb.GradNorm(3, update="sgd", dtype=torch.float64),
    ]


ALL = range(len(make_all()))


@pytest.mark.parametrize("index", ALL)
def test_exact_resume_through_state_dict(index):
    """Saving state_dict() mid-run into a file and loading it into a fresh balancer built with
    another seed continues bit for bit (ReLoBRaLo's lookback draws included)."""
    grads = golden.gradients()
    full = make_all()[index]
    pass_grads = grads if full.needs_gradients else None
    reference = run(full, golden.LOSSES, pass_grads)
    first = make_all()[index]
    run(first, golden.LOSSES[:6], None if pass_grads is None else pass_grads[:6])
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    resumed = make_all()[index]
    if isinstance(resumed, tb.ReLoBRaLo):
        resumed = relobralo(seed=99)
    resumed.load_state_dict(torch.load(buffer))
    rest = run(resumed, golden.LOSSES[6:], None if pass_grads is None else pass_grads[6:])
    np.testing.assert_array_equal(rest, reference[6:])


def test_weighted_total_is_differentiable_but_weights_are_constant():
    losses = torch.tensor([2.0, 3.0], dtype=torch.float64, requires_grad=True)
    balancer = tb.Fixed([1.0, 10.0], dtype=torch.float64)
    balancer(losses).backward()
    np.testing.assert_array_equal(losses.grad.numpy(), [1.0, 10.0])
    relo = relobralo()
    relo.update(torch.tensor([1.0, 1.0, 1.0]))
    x = torch.tensor([2.0, 3.0, 4.0], dtype=torch.float64, requires_grad=True)
    relo(x).backward()  # gradient = weights (constant), not d(weights)/dx
    np.testing.assert_allclose(x.grad.numpy(), relo.lambdas.numpy(), rtol=1e-15)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("index", ALL)
def test_non_finite_refused_state_unchanged(bad, index):
    grads = golden.gradients()
    balancer = make_all()[index]
    pass_grads = grads if balancer.needs_gradients else None
    run(balancer, golden.LOSSES[:4], None if pass_grads is None else pass_grads[:4])
    before = {k: v.clone() for k, v in balancer.state_dict().items()}
    row = golden.LOSSES[4].copy()
    row[1] = bad
    with pytest.raises(FloatingPointError, match="term 1"):
        balancer.update(
            torch.as_tensor(row),
            None
            if pass_grads is None
            else [[torch.as_tensor(g) for g in t] for t in pass_grads[4]],
        )
    for key, value in balancer.state_dict().items():
        assert torch.equal(value, before[key]), key
    if balancer.needs_gradients:
        step_grads = [[torch.as_tensor(g) for g in t] for t in pass_grads[4]]
        step_grads[2][-2] = step_grads[2][-2].clone()  # the last weight matrix: read by all
        step_grads[2][-2][0, 0] = bad
        with pytest.raises(FloatingPointError, match="loss term 2"):
            balancer.update(torch.as_tensor(golden.LOSSES[4]), step_grads)
        for key, value in balancer.state_dict().items():
            assert torch.equal(value, before[key]), key


def test_bad_arguments_named():
    with pytest.raises(ValueError, match="alpha"):
        tb.ReLoBRaLo(2, alpha=1.5)
    with pytest.raises(ValueError, match="temperature"):
        tb.SoftAdapt(2, temperature=0.0)
    with pytest.raises(TypeError, match="num_terms"):
        tb.Sum(2.0)
    with pytest.raises(ValueError, match="weights"):
        tb.Fixed([0.0, 0.0])
    with pytest.raises(ValueError, match="2 loss terms"):
        tb.Sum(2).update(torch.ones(3))
    with pytest.raises(ValueError, match="needs per-term gradients"):
        tb.LRAnnealing(2).update(torch.ones(2))
    with pytest.raises(ValueError, match="update_every"):
        tb.GlobalGradNorm(2, update_every=0)
    with pytest.raises(ValueError, match="momentum"):
        tb.GlobalGradNorm(2, momentum=1.0)
    with pytest.raises(ValueError, match="form"):
        tb.GlobalGradNorm(2, form="sum")
    with pytest.raises(ValueError, match="update must be one of"):
        tb.GradNorm(2, update="adamw")
    with pytest.raises(FloatingPointError, match="term 1"):
        tb.HomoscedasticUncertainty(2)(torch.tensor([1.0, float("nan")]))


def test_per_term_gradients_on_a_tiny_network():
    """per_term_gradients matches hand-derived gradients of L_1 = (w x)^2 and L_2 = w."""
    w = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    x = 2.0
    grads = tb.per_term_gradients([(w * x) ** 2, w], [w])
    assert [g[0].item() for g in grads] == [2 * 3.0 * x * x, 1.0]
