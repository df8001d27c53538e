"""Loss balancers for JAX: a port of pinnlib.balancing, one file to copy into a project.

In optax's style every balancer is a pair of pure functions on an explicit state::

    balancer = relobralo(num_terms=2, seed=0)
    state = balancer.init()
    weights, state = balancer.update(losses, state)          # jax.jit-able
    total = jnp.sum(weights * losses)

``losses`` is a 1-D array of this step's loss terms; the weights come back with
``jax.lax.stop_gradient`` applied, so a total built from them is differentiated only through
the losses. The state is a NamedTuple of arrays (step counter, weights, remembered losses and,
for ReLoBRaLo, the PRNG key of the lookbacks), so it can be saved with NumPy and a run resumed
exactly. The gradient-based balancers (``needs_gradients``) also take ``grads``: one pytree of
parameter gradients per term (``[jax.grad(term_i)(params) for each term]``); their leaves, in
``jax.tree_util.tree_leaves`` order, play the role of the TensorFlow balancers' variables.

Non-finite inputs are refused: inside ``jax.jit`` nothing can be raised, so a step whose loss
terms (or gradients read) are not all finite returns NaN weights (a total built from them is
NaN, visibly) and the state *unchanged*, like the TensorFlow balancers under XLA. The caller
checks its losses, as pinnlib's training step does.

Homoscedastic uncertainty weighting has trainable parameters, so it is not an init/update
pair: :func:`homoscedastic_uncertainty` gives ``init()`` (the log-variances to put into your
parameters), ``total(log_variances, losses)`` (the loss to differentiate) and
``weights(log_variances)``.

The names (in snake case), rules, forms and defaults are those of pinnlib/balancing.py
(TensorFlow): ``lr_annealing(form=...)``, ``gradnorm(update="adam")``, ``global_grad_norm``,
``homoscedastic_uncertainty``; both are tested against the same NumPy golden cases
(tests/golden_balancers.py). The book's appendix "Using
these balancers elsewhere" shows them in use; "Balancing schemes" and "ReLoBRaLo piece by
piece" introduce the rules. This file imports only JAX and NumPy.

References:
    Bischof & Kraus (2021), arXiv:2110.09813 (ReLoBRaLo; SoftAdapt in the relative form
    compared there).
    Wang, Teng & Perdikaris (2021), arXiv:2001.04536 (learning-rate annealing).
    Wang, Sankaran, Wang & Perdikaris (2023), arXiv:2308.08468 (global gradient-norm weights).
    Chen et al. (2018), arXiv:1711.02257 (GradNorm).
    Kendall, Gal & Cipolla (2018), arXiv:1705.07115 (uncertainty weighting), in the form of
    NVIDIA PhysicsNeMo-Sym's HomoscedasticUncertainty aggregator.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "Balancer",
    "WeightsState",
    "SoftAdaptState",
    "ReLoBRaLoState",
    "GradNormState",
    "UncertaintyBalancer",
    "sum_weights",
    "fixed",
    "softadapt",
    "relobralo",
    "lr_annealing",
    "gradnorm",
    "global_grad_norm",
    "homoscedastic_uncertainty",
    "LR_ANNEALING_FORMS",
    "GRADNORM_UPDATES",
    "GRADNORM_LEARNING_RATES",
    "GRADNORM_ADAM",
    "GLOBAL_GRAD_NORM_FORMS",
]


class Balancer(NamedTuple):
    """A balancer: ``init() -> state`` and ``update(losses, state, grads=None) -> (weights,
    state)``; ``needs_gradients`` says whether ``update`` needs per-term gradients."""

    init: Callable[[], Any]
    update: Callable[..., tuple[jax.Array, Any]]
    needs_gradients: bool = False


class WeightsState(NamedTuple):
    step: jax.Array
    lambdas: jax.Array


class SoftAdaptState(NamedTuple):
    step: jax.Array
    lambdas: jax.Array
    previous_losses: jax.Array


class ReLoBRaLoState(NamedTuple):
    step: jax.Array
    lambdas: jax.Array
    initial_losses: jax.Array
    previous_losses: jax.Array
    key: jax.Array


class GradNormState(NamedTuple):
    step: jax.Array
    lambdas: jax.Array
    initial_losses: jax.Array
    floor_hits: jax.Array
    adam_m: jax.Array
    adam_v: jax.Array


class UncertaintyBalancer(NamedTuple):
    """Homoscedastic uncertainty weighting: ``init() -> log_variances`` (trainable, put them
    into your parameters), ``total(log_variances, losses)`` (differentiate it in both) and
    ``weights(log_variances)`` (the reported ``exp(-s)``, gradient stopped)."""

    init: Callable[[], jax.Array]
    total: Callable[[jax.Array, Any], jax.Array]
    weights: Callable[[jax.Array], jax.Array]


# -- argument checks -------------------------------------------------------------------------
def _number(name: str, value) -> float:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {value!r}") from None


def _check_range(name: str, value, low: float, high: float, closed: bool = True) -> float:
    value = _number(name, value)
    inside = low <= value <= high if closed else low < value <= high
    if math.isnan(value) or not inside:
        raise ValueError(f"{name} must be in {'[' if closed else '('}{low}, {high}], got {value}")
    return value


def _check_positive(name: str, value) -> float:
    value = _number(name, value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return value


def _check_int(name: str, value, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        raise ValueError(
            f"{name} must be in [{low}, {'inf' if high is None else high}], got {value}"
        )
    return int(value)


def _dtype(dtype):
    dtype = jnp.dtype(dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"dtype must be a floating dtype, got {dtype}")
    return dtype


# -- shared machinery ----------------------------------------------------------------------
def _losses(losses, num_terms: int, dtype) -> jax.Array:
    values = jnp.asarray(losses)
    if values.shape != (num_terms,):
        raise ValueError(
            f"the balancer was built for {num_terms} loss terms, got shape {values.shape}"
        )
    return jax.lax.stop_gradient(values.astype(dtype))


def _guarded(ok: jax.Array, new_weights: jax.Array, new_state, old_state):
    """``(weights, state)`` if ``ok``, else ``(NaN weights, old state)``: a refused step."""
    weights = jnp.where(ok, new_weights, jnp.nan)
    state = jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), new_state, old_state)
    return jax.lax.stop_gradient(weights), state


def _check_grads(grads, num_terms: int) -> list[list[jax.Array]]:
    if grads is None:
        raise ValueError("this balancer needs per-term gradients: pass grads=...")
    if len(grads) != num_terms:
        raise ValueError(f"expected gradients for {num_terms} terms, got {len(grads)}")
    leaves = [jax.tree_util.tree_leaves(g) for g in grads]
    if any(not term for term in leaves):
        raise ValueError("a loss term has no gradient with respect to any parameter")
    return leaves


def _all_finite(arrays) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(a)) for a in arrays]))


def _softmax_weights(ratios: jax.Array) -> jax.Array:
    """``n * softmax(ratios)``, the max subtracted first."""
    e = jnp.exp(ratios - jnp.max(ratios))
    return ratios.shape[0] * e / jnp.sum(e)


def _weights_init(num_terms: int, dtype, start=None):
    lambdas = jnp.ones(num_terms, dtype) if start is None else jnp.asarray(start, dtype)
    return WeightsState(step=jnp.zeros((), jnp.int32), lambdas=lambdas)


# -- loss-only balancers -------------------------------------------------------------------
def sum_weights(num_terms: int, dtype="float32") -> Balancer:
    """The unweighted sum, ``lambda_i = 1``: the baseline."""
    n, dtype = _check_int("num_terms", num_terms, 1), _dtype(dtype)

    def update(losses, state, grads=None):
        values = _losses(losses, n, dtype)
        new = WeightsState(state.step + 1, jnp.ones(n, dtype))
        return _guarded(jnp.all(jnp.isfinite(values)), new.lambdas, new, state)

    return Balancer(lambda: _weights_init(n, dtype), update)


def fixed(weights: Sequence[float], dtype="float32") -> Balancer:
    """Fixed weights chosen by hand: finite, >= 0, not all zero."""
    values = np.asarray(weights, np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"weights must be a non-empty 1-D sequence, got shape {values.shape}")
    if not np.all(np.isfinite(values)) or np.any(values < 0) or not np.any(values > 0):
        raise ValueError(f"weights must be finite, >= 0 and not all zero, got {weights}")
    n, dtype = values.size, _dtype(dtype)

    def update(losses, state, grads=None):
        vals = _losses(losses, n, dtype)
        new = WeightsState(state.step + 1, jnp.asarray(values, dtype))
        return _guarded(jnp.all(jnp.isfinite(vals)), new.lambdas, new, state)

    return Balancer(lambda: _weights_init(n, dtype, values), update)


def softadapt(
    num_terms: int, temperature: float = 0.1, eps: float = 1e-7, dtype="float32"
) -> Balancer:
    """SoftAdapt in the relative form compared in the ReLoBRaLo article (arXiv:2110.09813):
    ``n * softmax(L(t) / (T L(t-1) + eps))``, one at step 0. (The original SoftAdapt,
    arXiv:1912.12355, uses differences ``L(t) - L(t-1)`` and is not scale invariant.)"""
    n, dtype = _check_int("num_terms", num_terms, 1), _dtype(dtype)
    T = _check_positive("temperature", temperature)
    eps = _check_range("eps", eps, 0.0, 1.0)

    def init():
        return SoftAdaptState(jnp.zeros((), jnp.int32), jnp.ones(n, dtype), jnp.ones(n, dtype))

    def update(losses, state, grads=None):
        values = _losses(losses, n, dtype)
        ratios = values / (T * state.previous_losses + eps)
        weights = jnp.where(state.step > 0, _softmax_weights(ratios), jnp.ones(n, dtype))
        new = SoftAdaptState(state.step + 1, weights, values)
        return _guarded(jnp.all(jnp.isfinite(values)), weights, new, state)

    return Balancer(init, update)


def relobralo(
    num_terms: int,
    alpha: float = 0.999,
    temperature: float = 0.1,
    rho: float = 0.99,
    eps: float = 1e-7,
    seed: int = 0,
    dtype="float32",
) -> Balancer:
    """Relative Loss Balancing with Random Lookbacks (Bischof & Kraus 2021, arXiv:2110.09813).

    With ``lhat(t, t') = n * softmax(L(t) / (T L(t') + eps))``::

        lambda(t) = alpha * [rho * lambda(t-1) + (1 - rho) * lhat(t, 0)]
                    + (1 - alpha) * lhat(t, t-1)

    Every step (warm-up included) splits the state's key, ``key, sub = jax.random.split(key)``,
    and draws ``u = jax.random.uniform(sub)``; ``rho = (u < rho_hyper)``. Warm-up: weights one
    at step 0 (``L(0)`` recorded), ``lhat(1, 0)`` at step 1. The article's defaults
    (PhysicsNeMo-Sym's are alpha 0.95, T 1). ``seed`` makes the initial key.
    """
    n, dtype = _check_int("num_terms", num_terms, 1), _dtype(dtype)
    alpha = _check_range("alpha", alpha, 0.0, 1.0)
    T = _check_positive("temperature", temperature)
    rho_p = _check_range("rho", rho, 0.0, 1.0)
    eps = _check_range("eps", eps, 0.0, 1.0)
    seed = _check_int("seed", seed, 0, 2**32 - 1)

    def init():
        ones = jnp.ones(n, dtype)
        return ReLoBRaLoState(jnp.zeros((), jnp.int32), ones, ones, ones, jax.random.PRNGKey(seed))

    def update(losses, state, grads=None):
        values = _losses(losses, n, dtype)
        key, sub = jax.random.split(state.key)
        draw = jax.random.uniform(sub, (), jnp.float32)
        r = (draw < rho_p).astype(dtype)
        initial = jnp.where(state.step == 0, values, state.initial_losses)
        lhat_0 = _softmax_weights(values / (T * initial + eps))
        lhat_prev = _softmax_weights(values / (T * state.previous_losses + eps))
        decayed = alpha * (r * state.lambdas + (1 - r) * lhat_0) + (1 - alpha) * lhat_prev
        weights = jnp.where(
            state.step == 0, jnp.ones(n, dtype), jnp.where(state.step == 1, lhat_0, decayed)
        )
        new = ReLoBRaLoState(state.step + 1, weights, initial, values, key)
        return _guarded(jnp.all(jnp.isfinite(values)), weights, new, state)

    return Balancer(init, update)


# -- gradient-based balancers --------------------------------------------------------------
#: LRAnnealing's forms, by source (as in pinnlib.balancing.LRAnnealing.FORMS).
LR_ANNEALING_FORMS = ("published", "authors_code", "unweighted")
#: GradNorm's weight updates, their default learning rates and Keras' Adam constants (as in
#: pinnlib.balancing.GradNorm).
GRADNORM_UPDATES = ("adam", "sgd")
GRADNORM_LEARNING_RATES = {"adam": 1e-3, "sgd": 0.025}
GRADNORM_ADAM = {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}
#: GlobalGradNorm's forms: the paper's sum, the authors' JAX code's mean.
GLOBAL_GRAD_NORM_FORMS = ("paper", "jaxpi")


def _annealing_form(weighted, form) -> str:
    """pinnlib 0.2.0's ``weighted`` switch mapped onto ``form``, as the TensorFlow class does."""
    if weighted is not None and not isinstance(weighted, (bool, np.bool_)):
        raise TypeError(f"weighted must be True, False or None, got {weighted!r}")
    if form is not None and form not in LR_ANNEALING_FORMS:
        raise ValueError(f"form must be one of {LR_ANNEALING_FORMS}, got {form!r}")
    implied = None if weighted is None else ("published" if weighted else "unweighted")
    if implied is not None and form is not None and form != implied:
        raise ValueError(
            f"weighted={weighted} means form={implied!r}, but form={form!r} was given: "
            "pass only form"
        )
    return form or implied or "published"


def _kernels(term: list[jax.Array]) -> list[jax.Array]:
    """The gradients of the weight matrices: the pytree leaves with ``ndim == 2``."""
    kernels = [g for g in term if g.ndim == 2]
    if not kernels:
        raise ValueError(
            "form='authors_code' reads the gradients of the weight matrices (pytree leaves "
            "with ndim == 2), but a loss term has none"
        )
    return kernels


def lr_annealing(
    num_terms: int,
    residual_index: int = 0,
    a: float = 0.1,
    update_every: int = 10,
    weighted: bool | None = None,
    eps: float = 1e-12,
    dtype="float32",
    form: str | None = None,
) -> Balancer:
    """Learning-rate annealing (Wang, Teng & Perdikaris 2021, arXiv:2001.04536), in the form its
    source names, as pinnlib.balancing.LRAnnealing states it.

    The residual keeps weight one; at steps 0, k, 2k, ... ``lhat_i = max|grad L_residual| /
    mean|grad (lambda_i L_i)|`` and ``lambda_i <- (1 - a) lambda_i + a lhat_i``. Forms:
    ``"published"`` (default; Algorithm 2.1: max and mean over all gradient leaves, weighted
    term in the denominator); ``"authors_code"`` (the authors' Helmholtz code: max over the
    weight matrices only, over the mean over layers of each one's mean; a weight matrix is a
    pytree leaf with ``ndim == 2``, biases with ``ndim == 1`` are skipped); ``"unweighted"``
    (pinnlib 0.2.0's default: all leaves, the unweighted ``L_i``). ``weighted=True`` /
    ``False`` is pinnlib 0.2.0's switch for ``"published"`` / ``"unweighted"``. The chapter
    "Balancing schemes" introduces it.
    """
    n, dtype = _check_int("num_terms", num_terms, 1), _dtype(dtype)
    res = _check_int("residual_index", residual_index, 0, n - 1)
    a = _check_range("a", a, 0.0, 1.0, closed=False)
    every = _check_int("update_every", update_every, 1)
    eps = _check_range("eps", eps, 0.0, 1.0)
    form = _annealing_form(weighted, form)

    def update(losses, state, grads=None):
        values = _losses(losses, n, dtype)
        leaves = _check_grads(grads, n)
        if form == "authors_code":
            kernels = [[jnp.abs(k).astype(dtype) for k in _kernels(term)] for term in leaves]
            top = jnp.max(jnp.stack([jnp.max(k) for k in kernels[res]]))
            means = jnp.stack([jnp.mean(jnp.stack([jnp.mean(k) for k in t])) for t in kernels])
            read = [k for term in leaves for k in _kernels(term)]
        else:
            flat = [
                jnp.concatenate([jnp.abs(g).reshape(-1) for g in term]).astype(dtype)
                for term in leaves
            ]
            top = jnp.max(flat[res])
            means = jnp.stack([jnp.mean(f) for f in flat])
            read = [g for term in leaves for g in term]
        if form != "unweighted":
            means = means * state.lambdas
        lhat = (top / (means + eps)).at[res].set(1.0)
        moved = (1 - a) * state.lambdas + a * lhat
        weights = jnp.where(state.step % every == 0, moved, state.lambdas)
        ok = jnp.all(jnp.isfinite(values)) & _all_finite(read)
        return _guarded(ok, weights, WeightsState(state.step + 1, weights), state)

    return Balancer(lambda: _weights_init(n, dtype), update, needs_gradients=True)


def gradnorm(
    num_terms: int,
    asymmetry: float = 1.5,
    learning_rate: float | None = None,
    shared_variable: int = -2,
    min_weight: float = 1e-3,
    eps: float = 1e-12,
    dtype="float32",
    update: str = "adam",
) -> Balancer:
    """GradNorm (Chen et al. 2018, arXiv:1711.02257) as pinnlib.balancing.GradNorm states it.

    ``g_i = ||grad_W L_i||`` on the shared leaf ``W`` (index ``shared_variable`` into each
    term's ``tree_leaves``), ``G = w g``, ``r_i = (L_i(t)/L_i(0)) / mean_j(L_j(t)/L_j(0))``,
    target ``mean(G) r^asymmetry``; one step on ``sum_i |G_i - G*_i|`` (gradient
    ``sign(G - target) g``): ``update="adam"`` (default) with Keras' Adam
    (:data:`GRADNORM_ADAM`, moments ``adam_m``/``adam_v`` in the state, learning rate 1e-3
    by default, the ReLoBRaLo authors' code), ``update="sgd"`` plain descent (default rate
    0.025, pinnlib 0.2.0's form). A weight below ``min_weight`` is held there and counted
    (``floor_hits`` in the state), then the weights are renormalised to sum to n. The chapter
    "Balancing schemes" introduces it.
    """
    n, dtype = _check_int("num_terms", num_terms, 1), _dtype(dtype)
    if update not in GRADNORM_UPDATES:
        raise ValueError(f"update must be one of {GRADNORM_UPDATES}, got {update!r}")
    rule = update
    asym = _check_range("asymmetry", asymmetry, 0.0, 100.0)
    if learning_rate is None:
        learning_rate = GRADNORM_LEARNING_RATES[rule]
    lr = _check_positive("learning_rate", learning_rate)
    shared = _check_int("shared_variable", shared_variable, -(10**6))
    floor = _check_positive("min_weight", min_weight)
    eps = _check_range("eps", eps, 0.0, 1.0)
    b1, b2 = GRADNORM_ADAM["beta_1"], GRADNORM_ADAM["beta_2"]

    def init():
        ones, zeros = jnp.ones(n, dtype), jnp.zeros(n, dtype)
        return GradNormState(
            jnp.zeros((), jnp.int32), ones, ones, jnp.zeros(n, jnp.int32), zeros, zeros
        )

    def step(losses, state, grads=None):
        values = _losses(losses, n, dtype)
        read = [term[shared] for term in _check_grads(grads, n)]
        g = jnp.stack([jnp.linalg.norm(x.astype(dtype).reshape(-1)) for x in read])
        initial = jnp.where(state.step == 0, values, state.initial_losses)
        big = state.lambdas * g
        ratio = values / (initial + eps)
        r = ratio / (jnp.mean(ratio) + eps)
        target = jnp.mean(big) * r**asym
        gradient = jnp.sign(big - target) * g  # d L_grad / d w_i, the target held constant
        m, v = state.adam_m, state.adam_v
        if rule == "sgd":
            w = state.lambdas - lr * gradient
        else:
            t = (state.step + 1).astype(dtype)
            m = m + (gradient - m) * (1 - b1)
            v = v + (jnp.square(gradient) - v) * (1 - b2)
            rate = lr * jnp.sqrt(1 - b2**t) / (1 - b1**t)
            w = state.lambdas - rate * m / (jnp.sqrt(v) + GRADNORM_ADAM["epsilon"])
        hits = state.floor_hits + (w < floor).astype(state.floor_hits.dtype)
        w = jnp.maximum(w, floor)
        weights = n * w / jnp.sum(w)
        ok = jnp.all(jnp.isfinite(values)) & _all_finite(read)
        new = GradNormState(state.step + 1, weights, initial, hits, m, v)
        return _guarded(ok, weights, new, state)

    return Balancer(init, step, needs_gradients=True)


def global_grad_norm(
    num_terms: int,
    momentum: float = 0.9,
    update_every: int = 1000,
    form: str = "paper",
    eps: float = 1e-12,
    dtype="float32",
) -> Balancer:
    """Global gradient-norm weighting (Wang, Sankaran, Wang & Perdikaris 2023, "An expert's
    guide to training physics-informed neural networks", arXiv:2308.08468), as
    pinnlib.balancing.GlobalGradNorm states it.

    At steps 0, f, 2f, ... (``f = update_every``): ``lhat_i = sum_j ||grad L_j|| /
    ||grad L_i||`` (L2 norms over all gradient leaves) and ``lambda <- momentum lambda +
    (1 - momentum) lhat``, from weights one (the first update gives ``0.9 + 0.1 lhat``).
    ``form="paper"`` (default) takes the sum over terms, as the guide writes it;
    ``form="jaxpi"`` the mean, as the authors' JAX code does (every weight divided by n). The
    chapter "Balancing schemes" introduces it.
    """
    n, dtype = _check_int("num_terms", num_terms, 1), _dtype(dtype)
    momentum = _check_range("momentum", momentum, 0.0, 1.0)
    if momentum == 1.0:
        raise ValueError("momentum must be in [0, 1), got 1.0 (the weights would never move)")
    every = _check_int("update_every", update_every, 1)
    if form not in GLOBAL_GRAD_NORM_FORMS:
        raise ValueError(f"form must be one of {GLOBAL_GRAD_NORM_FORMS}, got {form!r}")
    eps = _check_range("eps", eps, 0.0, 1.0)

    def update(losses, state, grads=None):
        values = _losses(losses, n, dtype)
        leaves = _check_grads(grads, n)
        norms = jnp.stack(
            [jnp.sqrt(sum(jnp.sum(jnp.square(g.astype(dtype))) for g in term)) for term in leaves]
        )
        scale = jnp.sum(norms) if form == "paper" else jnp.mean(norms)
        moved = momentum * state.lambdas + (1 - momentum) * scale / (norms + eps)
        weights = jnp.where(state.step % every == 0, moved, state.lambdas)
        ok = jnp.all(jnp.isfinite(values)) & _all_finite([g for term in leaves for g in term])
        return _guarded(ok, weights, WeightsState(state.step + 1, weights), state)

    return Balancer(lambda: _weights_init(n, dtype), update, needs_gradients=True)


# -- homoscedastic uncertainty weighting (trainable) ---------------------------------------------
def homoscedastic_uncertainty(num_terms: int, dtype="float32") -> UncertaintyBalancer:
    """Homoscedastic uncertainty weighting (Kendall, Gal & Cipolla 2018, arXiv:1705.07115) in
    PhysicsNeMo-Sym's form, as pinnlib.balancing.HomoscedasticUncertainty states it::

        L = sum_i exp(-s_i) * L_i + s_i,      s_i = log sigma_i^2 trainable, initialised 0

    (twice Kendall et al.'s ``L_i / (2 sigma_i^2) + log sigma_i``, the same minimiser).
    ``init()`` gives ``s`` (zeros): add it to your parameters and differentiate
    ``total(s, losses)`` with respect to both (``d total / d s_i = 1 - exp(-s_i) L_i``);
    ``weights(s)`` are the reported ``exp(-s)``. A non-finite loss makes the total non-finite
    (visibly; nothing can be raised under ``jax.jit``). The chapter "Balancing schemes"
    introduces it.
    """
    n, dtype = _check_int("num_terms", num_terms, 1), _dtype(dtype)

    def total(log_variances, losses):
        values = jnp.asarray(losses)
        if values.shape != (n,) or log_variances.shape != (n,):
            raise ValueError(
                f"the balancer was built for {n} loss terms, got losses of shape "
                f"{values.shape} and log_variances of shape {log_variances.shape}"
            )
        s = log_variances.astype(values.dtype)
        return jnp.sum(jnp.exp(-s) * values + s)

    def weights(log_variances):
        return jax.lax.stop_gradient(jnp.exp(-log_variances))

    return UncertaintyBalancer(lambda: jnp.zeros(n, dtype), total, weights)
