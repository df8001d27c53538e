"""Golden cases shared by the TensorFlow balancers and their PyTorch and JAX ports.

One NumPy re-derivation of every rule (from the papers, as REFERENCE.md states them) and one
set of inputs: the TensorFlow tests (tests/test_golden_tf.py) and the ports' tests
(tests/test_ports_torch.py, tests/test_ports_jax.py) all compare against these functions on
these inputs, so the three implementations cannot drift apart without a test failing.

ReLoBRaLo's Bernoulli lookbacks are an *input* here (``uniforms``: the uniform number drawn
at each step): every framework draws from its own seeded generator, so each test replays the
draws its implementation makes (``tf.random.Generator.from_seed(seed).uniform([])`` per step
for TensorFlow, a seeded ``torch.Generator`` for PyTorch, split keys for JAX) and feeds them
to :func:`relobralo`. The loss sequence is long enough to cover the warm-up (steps 0 and 1),
several lookbacks (``rho = 0.5`` makes about half the steps look back) and, for the periodic
gradient rules, updates and the steps between them.

This file imports NumPy only.
"""

from __future__ import annotations

import numpy as np

# -- inputs -----------------------------------------------------------------------------------
#: Three terms of very different sizes (a PDE residual near 1e3, a boundary term near 1e-2, a
#: data term near 1) over 14 steps; each rises at some step, so the weights move both ways.
LOSSES = np.array(
    [
        [1.2e3, 3.0e-2, 1.00],
        [9.5e2, 3.4e-2, 0.90],
        [7.0e2, 4.1e-2, 0.95],
        [5.2e2, 3.9e-2, 0.70],
        [5.5e2, 2.5e-2, 0.52],
        [3.1e2, 2.6e-2, 0.50],
        [2.0e2, 1.8e-2, 0.55],
        [1.6e2, 1.1e-2, 0.31],
        [1.7e2, 9.0e-3, 0.29],
        [9.0e1, 9.5e-3, 0.20],
        [6.0e1, 6.0e-3, 0.21],
        [6.3e1, 4.0e-3, 0.15],
        [3.3e1, 4.2e-3, 0.11],
        [2.1e1, 2.0e-3, 0.12],
    ]
)
NUM_STEPS, NUM_TERMS = LOSSES.shape

#: Hyperparameters of the ReLoBRaLo case: rho = 0.5 so that lookbacks happen often; the
#: article's temperature and eps.
RELOBRALO = {"alpha": 0.9, "temperature": 0.1, "rho": 0.5, "eps": 1e-7}
SOFTADAPT = {"temperature": 0.1, "eps": 1e-7}
FIXED_WEIGHTS = [1.0, 100.0, 0.5]
SEED = 1234

#: Shapes of the two "variables" of the synthetic gradient case: a kernel and a bias.
VARIABLE_SHAPES = [(4, 3), (3,)]


def gradients(num_steps: int = NUM_STEPS, seed: int = 7) -> list[list[list[np.ndarray]]]:
    """Per-step, per-term, per-variable gradients: ``grads[t][i][j]`` is dL_i/dv_j at step t.

    The terms' gradient sizes differ by orders of magnitude (as in a PINN: a large residual
    gradient, a small boundary one) and drift over the steps.
    """
    rng = np.random.default_rng(seed)
    scales = np.array([50.0, 0.02, 1.0])
    out = []
    for t in range(num_steps):
        drift = np.exp(-0.1 * t * np.array([1.0, -0.5, 0.2]))
        out.append(
            [
                [rng.normal(size=s) * scales[i] * drift[i] for s in VARIABLE_SHAPES]
                for i in range(NUM_TERMS)
            ]
        )
    return out


# -- the rules ------------------------------------------------------------------------------
def lhat(losses, reference, temperature: float, eps: float) -> np.ndarray:
    """``n * softmax(L(t) / (T L(t') + eps))``, the max subtracted first."""
    r = np.asarray(losses, np.float64) / (temperature * np.asarray(reference, np.float64) + eps)
    e = np.exp(r - r.max())
    return r.size * e / e.sum()


def sum_weights(losses) -> np.ndarray:
    """The unweighted sum: every weight one at every step."""
    return np.ones_like(np.asarray(losses, np.float64))


def fixed_weights(losses, weights) -> np.ndarray:
    """Fixed weights at every step."""
    losses = np.asarray(losses, np.float64)
    return np.broadcast_to(np.asarray(weights, np.float64), losses.shape).copy()


def softadapt(losses, temperature: float, eps: float) -> np.ndarray:
    """SoftAdapt's relative form (as in the ReLoBRaLo article): one at step 0, then
    ``lhat(t, t-1)``."""
    losses = np.asarray(losses, np.float64)
    out = [np.ones(losses.shape[1])]
    out += [lhat(losses[t], losses[t - 1], temperature, eps) for t in range(1, len(losses))]
    return np.array(out)


def relobralo(losses, uniforms, alpha: float, temperature: float, rho: float, eps: float):
    """ReLoBRaLo (arXiv:2110.09813) with the step's uniform draws given; rho_t = (u_t < rho).

    Step 0: weights one, L(0) recorded; step 1: ``lhat(1, 0)``; then
    ``alpha (rho_t lambda(t-1) + (1 - rho_t) lhat(t, 0)) + (1 - alpha) lhat(t, t-1)``.
    """
    losses = np.asarray(losses, np.float64)
    n = losses.shape[1]
    lam = np.ones(n)
    out = [lam]
    for t in range(1, len(losses)):
        l0 = lhat(losses[t], losses[0], temperature, eps)
        if t == 1:
            lam = l0
        else:
            r = float(uniforms[t] < rho)
            lp = lhat(losses[t], losses[t - 1], temperature, eps)
            lam = alpha * (r * lam + (1 - r) * l0) + (1 - alpha) * lp
        out.append(lam)
    return np.array(out)


def _flat_abs(term) -> np.ndarray:
    return np.concatenate([np.abs(np.ravel(g)) for g in term])


def lr_annealing(grads, residual: int, a: float, every: int, weighted: bool, eps: float = 1e-12):
    """Learning-rate annealing (arXiv:2001.04536) as pinnlib's LRAnnealing states it.

    At steps 0, k, 2k, ...: ``lhat_i = max|grad L_r| / (mean|grad L_i| [* lambda_i] + eps)``
    (``weighted`` multiplies by the current weight, i.e. differentiates ``lambda_i L_i``), the
    residual's ``lhat`` is one, and ``lambda <- (1 - a) lambda + a lhat``; other steps keep it.
    """
    n = len(grads[0])
    lam = np.ones(n)
    out = []
    for t, step_grads in enumerate(grads):
        if t % every == 0:
            flat = [_flat_abs(term) for term in step_grads]
            means = np.array([f.mean() for f in flat])
            if weighted:
                means = means * lam
            new = flat[residual].max() / (means + eps)
            new[residual] = 1.0
            lam = (1 - a) * lam + a * new
        out.append(lam.copy())
    return np.array(out)


def grad_norm_weighting(grads, a: float, every: int, eps: float = 1e-12):
    """Global gradient-norm weighting (Wang, Sankaran, Wang & Perdikaris, arXiv:2308.08468).

    At steps 0, f, 2f, ...: ``lhat_i = sum_j ||grad L_j|| / (||grad L_i|| + eps)`` (L2 norms
    over all variables) and ``lambda <- (1 - a) lambda + a lhat`` (the paper's 0.9/0.1 is
    ``a = 0.1``); other steps keep the weights.
    """
    n = len(grads[0])
    lam = np.ones(n)
    out = []
    for t, step_grads in enumerate(grads):
        if t % every == 0:
            norms = np.array(
                [np.sqrt(sum(np.sum(np.square(g)) for g in term)) for term in step_grads]
            )
            lam = (1 - a) * lam + a * norms.sum() / (norms + eps)
        out.append(lam.copy())
    return np.array(out)


def gradnorm(losses, grads, asymmetry, learning_rate, shared, min_weight, eps=1e-12):
    """GradNorm (arXiv:1711.02257) as pinnlib's GradNorm states it: one sign-gradient step on
    ``sum_i |w_i g_i - mean(w g) r_i^asymmetry|`` per step, floor ``min_weight``, renormalised
    to sum to n; ``g_i`` the norm of term i's gradient on the shared variable."""
    losses = np.asarray(losses, np.float64)
    n = losses.shape[1]
    w = np.ones(n)
    out = []
    for t, step_grads in enumerate(grads):
        g = np.array([np.linalg.norm(np.ravel(term[shared])) for term in step_grads])
        big = w * g
        ratio = losses[t] / (losses[0] + eps)
        r = ratio / (ratio.mean() + eps)
        target = big.mean() * r**asymmetry
        w = np.maximum(w - learning_rate * np.sign(big - target) * g, min_weight)
        w = n * w / w.sum()
        out.append(w.copy())
    return np.array(out)


def uncertainty_sgd(losses, learning_rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Homoscedastic uncertainty weighting (Kendall et al., arXiv:1705.07115) in
    PhysicsNeMo-Sym's form ``L = sum_i exp(-s_i) L_i + s_i``, s initialised 0, trained by
    plain gradient descent (``ds_i = 1 - exp(-s_i) L_i``) with the given losses held fixed.

    Returns (weights ``exp(-s)`` used at each step, totals at each step).
    """
    losses = np.asarray(losses, np.float64)
    s = np.zeros(losses.shape[1])
    weights, totals = [], []
    for row in losses:
        weights.append(np.exp(-s))
        totals.append(np.sum(np.exp(-s) * row + s))
        s = s - learning_rate * (1.0 - np.exp(-s) * row)
    return np.array(weights), np.array(totals)


#: Cases of the gradient rules: (name, keyword arguments).
LR_ANNEALING_CASES = [
    {"residual_index": 0, "a": 0.1, "update_every": 3, "weighted": False},
    {"residual_index": 0, "a": 0.1, "update_every": 3, "weighted": True},
    {"residual_index": 1, "a": 0.5, "update_every": 1, "weighted": True},
]
GRAD_NORM_WEIGHTING_CASES = [{"a": 0.1, "update_every": 4}, {"a": 1.0, "update_every": 1}]
GRADNORM_CASE = {
    "asymmetry": 1.5,
    "learning_rate": 0.025,
    "shared_variable": -2,
    "min_weight": 1e-3,
}
UNCERTAINTY_LR = 0.05


def lr_annealing_golden(grads, case: dict) -> np.ndarray:
    """:func:`lr_annealing` with a case's keyword arguments."""
    return lr_annealing(
        grads, case["residual_index"], case["a"], case["update_every"], case["weighted"]
    )


def gradnorm_golden(losses, grads, case: dict = GRADNORM_CASE) -> np.ndarray:
    """:func:`gradnorm` with a case's keyword arguments."""
    return gradnorm(
        losses,
        grads,
        case["asymmetry"],
        case["learning_rate"],
        case["shared_variable"],
        case["min_weight"],
    )
