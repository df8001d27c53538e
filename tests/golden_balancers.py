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

Every rule is written here from its paper's formula and the TensorFlow docstrings
(pinnlib/balancing.py states which source each form follows), never by calling pinnlib.
:data:`DEFAULTS` holds the default hyperparameters all three frameworks share; each test file
checks its constructors against it.

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

#: Shapes of the "variables" of the synthetic gradient case, as in a two-layer MLP: kernel,
#: bias, kernel, bias. Each term has two rank-2 entries of different sizes (so the mean of the
#: per-layer means differs from the mean over all kernel entries) and two rank-1 entries
#: (biases, which LRAnnealing's ``"authors_code"`` form must skip).
VARIABLE_SHAPES = [(4, 3), (3,), (3, 2), (2,)]


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


def _kernels(term) -> list[np.ndarray]:
    """The gradients of the weight matrices: the rank-2 entries (biases are rank 1)."""
    return [np.abs(np.asarray(g)) for g in term if np.ndim(g) == 2]


def lr_annealing(
    grads, residual: int, a: float, every: int, form: str = "published", eps: float = 1e-12
) -> np.ndarray:
    """Learning-rate annealing (Wang, Teng & Perdikaris, arXiv:2001.04536) in three forms.

    At steps 0, k, 2k, ... (``k = every``) every term but the residual gets
    ``lhat_i = top / (mean_i + eps)`` and ``lambda <- (1 - a) lambda + a lhat``; the residual's
    weight stays one, and the steps between keep the weights. With ``|.|`` the absolute
    gradient entries of this step:

    * ``"published"`` (Algorithm 2.1, eq. 2.30-2.31): ``top = max |grad L_r|`` over all
      variables, ``mean_i = lambda_i * mean |grad L_i|`` over all variables (the gradient of
      the *weighted* term ``lambda_i L_i``);
    * ``"authors_code"`` (their Helmholtz script): ``top`` the max over the rank-2 entries
      only, ``mean_i = lambda_i * mean over layers of (the layer's mean |grad L_i|)``, again
      rank-2 entries only;
    * ``"unweighted"``: as ``"published"`` without the factor ``lambda_i``.
    """
    if form not in ("published", "authors_code", "unweighted"):
        raise ValueError(f"unknown form {form!r}")
    n = len(grads[0])
    lam = np.ones(n)
    out = []
    for t, step_grads in enumerate(grads):
        if t % every == 0:
            if form == "authors_code":
                kernels = [_kernels(term) for term in step_grads]
                top = max(k.max() for k in kernels[residual])
                means = np.array([np.mean([k.mean() for k in ks]) for ks in kernels])
            else:
                flat = [_flat_abs(term) for term in step_grads]
                top = flat[residual].max()
                means = np.array([f.mean() for f in flat])
            if form != "unweighted":
                means = means * lam
            new = top / (means + eps)
            new[residual] = 1.0
            lam = (1 - a) * lam + a * new
        out.append(lam.copy())
    return np.array(out)


def global_grad_norm(
    grads, momentum: float, every: int, form: str = "paper", eps: float = 1e-12
) -> np.ndarray:
    """Global gradient-norm weighting (Wang, Sankaran, Wang & Perdikaris, arXiv:2308.08468).

    At steps 0, f, 2f, ... (``f = every``), with ``n_i = ||grad L_i||`` (L2 over all
    variables): ``lhat_i = S / (n_i + eps)``, ``S = sum_j n_j`` (``"paper"``) or the mean
    (``"jaxpi"``, the authors' JAX code), then ``lambda <- momentum lambda + (1 - momentum)
    lhat`` from weights one (so the first update gives ``momentum + (1 - momentum) lhat``);
    other steps keep the weights.
    """
    if form not in ("paper", "jaxpi"):
        raise ValueError(f"unknown form {form!r}")
    n = len(grads[0])
    lam = np.ones(n)
    out = []
    for t, step_grads in enumerate(grads):
        if t % every == 0:
            norms = np.array(
                [np.sqrt(sum(np.sum(np.square(g)) for g in term)) for term in step_grads]
            )
            scale = norms.sum() if form == "paper" else norms.mean()
            lam = momentum * lam + (1 - momentum) * scale / (norms + eps)
        out.append(lam.copy())
    return np.array(out)


#: Keras' Adam constants (beta_1, beta_2, epsilon), which GradNorm's ``update="adam"`` uses.
ADAM = {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}


def gradnorm(
    losses,
    grads,
    asymmetry: float,
    learning_rate: float,
    shared: int,
    min_weight: float,
    update: str = "adam",
    eps: float = 1e-12,
) -> tuple[np.ndarray, np.ndarray]:
    """GradNorm (Chen et al., arXiv:1711.02257) with the weights trained by Adam or plain SGD.

    Each step, with ``g_i = ||grad_W L_i||`` on the shared variable ``W`` (index ``shared``),
    ``G_i = w_i g_i``, ``r_i = (L_i(t) / (L_i(0) + eps)) / (mean_j of the same + eps)`` and the
    constant target ``G*_i = mean(G) r_i^asymmetry``, the gradient of
    ``sum_i |G_i - G*_i|`` in ``w`` is ``d_i = sign(G_i - G*_i) g_i``. The step:

    * ``"sgd"``: ``w <- w - learning_rate * d``;
    * ``"adam"``: Adam as Keras documents it, at step ``t = 1, 2, ...``:
      ``m <- beta_1 m + (1 - beta_1) d``, ``v <- beta_2 v + (1 - beta_2) d^2``,
      ``w <- w - learning_rate sqrt(1 - beta_2^t) / (1 - beta_1^t) * m / (sqrt(v) + epsilon)``.

    Then a weight below ``min_weight`` is counted (per term) and raised to it, and the weights
    are rescaled to sum to n. Returns (weights after every step, floor hits per term).
    """
    if update not in ("adam", "sgd"):
        raise ValueError(f"unknown update {update!r}")
    losses = np.asarray(losses, np.float64)
    n = losses.shape[1]
    b1, b2, epsilon = ADAM["beta_1"], ADAM["beta_2"], ADAM["epsilon"]
    w, m, v = np.ones(n), np.zeros(n), np.zeros(n)
    hits = np.zeros(n, np.int64)
    out = []
    for t, step_grads in enumerate(grads, start=1):
        g = np.array([np.linalg.norm(np.ravel(term[shared])) for term in step_grads])
        big = w * g
        ratio = losses[t - 1] / (losses[0] + eps)
        r = ratio / (ratio.mean() + eps)
        d = np.sign(big - big.mean() * r**asymmetry) * g
        if update == "sgd":
            w = w - learning_rate * d
        else:
            m = b1 * m + (1 - b1) * d
            v = b2 * v + (1 - b2) * d**2
            w = w - learning_rate * np.sqrt(1 - b2**t) / (1 - b1**t) * m / (np.sqrt(v) + epsilon)
        hits += w < min_weight
        w = np.maximum(w, min_weight)
        w = n * w / w.sum()
        out.append(w.copy())
    return np.array(out), hits


def homoscedastic_uncertainty(losses, log_variances) -> tuple[float, np.ndarray, np.ndarray]:
    """Homoscedastic uncertainty weighting (Kendall, Gal & Cipolla, arXiv:1705.07115) in
    PhysicsNeMo-Sym's form ``L = sum_i exp(-s_i) L_i + s_i`` (``s_i = log sigma_i^2``).

    Returns ``(L, dL/ds, dL/dL_i)``: ``dL/ds_i = 1 - exp(-s_i) L_i`` and ``dL/dL_i =
    exp(-s_i)`` (the reported weight).
    """
    losses = np.asarray(losses, np.float64)
    s = np.asarray(log_variances, np.float64)
    weights = np.exp(-s)
    return float(np.sum(weights * losses + s)), 1.0 - weights * losses, weights


def uncertainty_sgd(losses, learning_rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Homoscedastic uncertainty weighting trained by plain gradient descent on ``s`` alone
    (``s`` initialised 0; each step's losses held fixed): ``s <- s - learning_rate dL/ds``
    once per step, after the weights and the total are read.

    Returns (weights ``exp(-s)`` used at each step, totals at each step).
    """
    losses = np.asarray(losses, np.float64)
    s = np.zeros(losses.shape[1])
    weights, totals = [], []
    for row in losses:
        total, ds, w = homoscedastic_uncertainty(row, s)
        weights.append(w)
        totals.append(total)
        s = s - learning_rate * ds
    return np.array(weights), np.array(totals)


# -- the shared defaults and cases ------------------------------------------------------------
#: Default hyperparameters, the same in TensorFlow, PyTorch and JAX (TensorFlow's
#: ``GradNorm(update=...)`` is kept as ``update_rule``; a ``learning_rate`` of ``None`` means
#: the update's default below).
DEFAULTS = {
    "LRAnnealing": {
        "residual_index": 0,
        "a": 0.1,
        "update_every": 10,
        "form": "published",
        "eps": 1e-12,
    },
    "GradNorm": {
        "asymmetry": 1.5,
        "shared_variable": -2,
        "min_weight": 1e-3,
        "eps": 1e-12,
        "update": "adam",
    },
    "GlobalGradNorm": {"momentum": 0.9, "update_every": 1000, "form": "paper", "eps": 1e-12},
}
#: GradNorm's default learning rate per update rule: the network's Adam rate in the ReLoBRaLo
#: authors' code, and pinnlib 0.2.0's plain-descent rate.
GRADNORM_LEARNING_RATES = {"adam": 1e-3, "sgd": 0.025}

LR_ANNEALING_CASES = [
    {"residual_index": 0, "a": 0.1, "update_every": 3, "form": "unweighted"},
    {"residual_index": 0, "a": 0.1, "update_every": 3, "form": "published"},
    {"residual_index": 1, "a": 0.5, "update_every": 1, "form": "published"},
    {"residual_index": 0, "a": 0.1, "update_every": 3, "form": "authors_code"},
    {"residual_index": 2, "a": 0.5, "update_every": 2, "form": "authors_code"},
]
GLOBAL_GRAD_NORM_CASES = [
    {"momentum": 0.9, "update_every": 4, "form": "paper"},
    {"momentum": 0.9, "update_every": 4, "form": "jaxpi"},
    {"momentum": 0.0, "update_every": 1, "form": "paper"},
    {"momentum": 0.5, "update_every": 3, "form": "jaxpi"},
]
#: The first is the default; the second takes steps large enough to reach the floor with Adam;
#: the third is pinnlib 0.2.0's form (plain descent, which the residual's large gradient
#: pins to the floor).
GRADNORM_CASES = [
    {"asymmetry": 1.5, "learning_rate": 1e-3, "shared_variable": -2, "min_weight": 1e-3,
     "update": "adam"},
    {"asymmetry": 1.0, "learning_rate": 0.4, "shared_variable": -2, "min_weight": 0.3,
     "update": "adam"},
    {"asymmetry": 1.5, "learning_rate": 0.025, "shared_variable": -2, "min_weight": 1e-3,
     "update": "sgd"},
]  # fmt: skip
#: Points ``(losses, log-variances)`` at which the uncertainty total and its gradients are
#: checked, and the step size of the plain gradient-descent run (2**-9, exact in float32:
#: Keras keeps an optimizer's learning rate in a float32 variable).
UNCERTAINTY_POINTS = [
    (LOSSES[0], [0.0, 0.0, 0.0]),
    (LOSSES[5], [0.3, -1.2, 2.0]),
    (LOSSES[13], [6.0, -4.0, 0.0]),
]
UNCERTAINTY_LR = 2.0**-9


def lr_annealing_golden(grads, case: dict) -> np.ndarray:
    """:func:`lr_annealing` with a case's (or :data:`DEFAULTS`') keyword arguments."""
    case = {**DEFAULTS["LRAnnealing"], **case}
    return lr_annealing(
        grads, case["residual_index"], case["a"], case["update_every"], case["form"], case["eps"]
    )


def global_grad_norm_golden(grads, case: dict) -> np.ndarray:
    """:func:`global_grad_norm` with a case's (or :data:`DEFAULTS`') keyword arguments."""
    case = {**DEFAULTS["GlobalGradNorm"], **case}
    return global_grad_norm(
        grads, case["momentum"], case["update_every"], case["form"], case["eps"]
    )


def gradnorm_golden(losses, grads, case: dict) -> tuple[np.ndarray, np.ndarray]:
    """:func:`gradnorm` with a case's (or :data:`DEFAULTS`') keyword arguments."""
    case = {**DEFAULTS["GradNorm"], **case}
    rate = case.get("learning_rate") or GRADNORM_LEARNING_RATES[case["update"]]
    return gradnorm(
        losses,
        grads,
        case["asymmetry"],
        rate,
        case["shared_variable"],
        case["min_weight"],
        case["update"],
        case["eps"],
    )
