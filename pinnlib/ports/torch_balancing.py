"""Loss balancers for PyTorch: a port of pinnlib.balancing, one file to copy into a project.

A PINN minimises ``L = sum_i lambda_i * L_i``; a balancer chooses the weights ``lambda_i``
during training. Every balancer here is a ``torch.nn.Module``:

* ``balancer(losses)`` updates the weights from this step's loss terms and returns the
  weighted total, with the weights detached (constant for the gradient);
  ``balancer.update(losses)`` returns the weights alone;
* its state (``step``, ``lambdas``, remembered losses, and ReLoBRaLo's random generator state)
  is in *buffers*, so ``state_dict()`` saves it and ``load_state_dict()`` continues a run
  exactly (same weights, same lookback draws);
* the gradient-based balancers (``needs_gradients = True``) also take ``grads``, one list of
  parameter gradients per term: :func:`per_term_gradients` computes them with
  ``torch.autograd.grad``;
* :class:`HomoscedasticUncertainty` has trainable log-variances (an ``nn.Parameter``): give
  its parameters to the optimiser together with the network's.

Non-finite inputs are refused, never absorbed: a NaN or infinite loss term (or a non-finite
entry in a gradient the balancer reads) raises ``FloatingPointError`` naming the term, and the
state is left exactly as it was.

The names, rules, forms and defaults are those of the TensorFlow balancers in
pinnlib/balancing.py (``LRAnnealing(form=...)``, ``GradNorm(update="adam")``,
``GlobalGradNorm``, ``HomoscedasticUncertainty``), and both are tested against the same NumPy
golden cases (tests/golden_balancers.py). The
book's appendix "Using these balancers elsewhere" shows them in use; the chapters "Balancing
schemes" and "ReLoBRaLo piece by piece" introduce the rules. This file imports only PyTorch
and NumPy.

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
from collections.abc import Sequence

import numpy as np
import torch

__all__ = [
    "Balancer",
    "Sum",
    "Fixed",
    "SoftAdapt",
    "ReLoBRaLo",
    "LRAnnealing",
    "GradNorm",
    "GlobalGradNorm",
    "HomoscedasticUncertainty",
    "per_term_gradients",
]


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


def per_term_gradients(
    losses: Sequence[torch.Tensor], parameters: Sequence[torch.Tensor]
) -> list[list[torch.Tensor | None]]:
    """``[[dL_i/dp for p in parameters] for L_i in losses]``, keeping the graph for backward.

    A parameter a term does not depend on gets ``None`` (``allow_unused``).
    """
    parameters = list(parameters)
    return [
        list(torch.autograd.grad(loss, parameters, retain_graph=True, allow_unused=True))
        for loss in losses
    ]


class Balancer(torch.nn.Module):
    """Base: buffers ``lambdas`` (one weight per term) and ``step`` (int64), and the call.

    Subclasses implement :meth:`_weights` (this step's constant losses, and gradients for
    those that need them, to new weights; it may assign the subclass's own buffers only
    through the dictionary it returns, so a refused step changes nothing).

    Args:
        num_terms: number of loss terms (>= 1).
        dtype: float dtype of the state; losses are cast to it.
    """

    needs_gradients = False

    def __init__(self, num_terms: int, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.num_terms = _check_int("num_terms", num_terms, 1)
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
        self.dtype = dtype
        self.register_buffer("step", torch.zeros((), dtype=torch.int64))
        self.register_buffer("lambdas", torch.ones(self.num_terms, dtype=dtype))

    def forward(self, losses, grads=None) -> torch.Tensor:
        """Update the weights and return ``sum_i lambda_i * L_i`` (weights detached)."""
        stacked = self._stack(losses)
        lambdas = self.update(stacked, grads)
        return torch.sum(lambdas.to(stacked.dtype) * stacked)

    @torch.no_grad()
    def update(self, losses, grads=None) -> torch.Tensor:
        """Compute, store and return this step's weights (a detached copy, ``[num_terms]``).

        Raises FloatingPointError, storing nothing, when a loss term or a gradient entry the
        balancer reads is not finite.
        """
        stacked = self._stack(losses)
        values = stacked.detach().to(device=self.lambdas.device, dtype=self.dtype)
        if self.needs_gradients:
            if grads is None:
                raise ValueError(f"{type(self).__name__} needs per-term gradients: pass grads=...")
            if len(grads) != self.num_terms:
                raise ValueError(f"expected gradients for {self.num_terms} terms, got {len(grads)}")
        self._refuse_non_finite(values, grads)
        new, buffers = self._weights(values, grads)
        for name, value in buffers.items():
            getattr(self, name).copy_(value)
        self.lambdas.copy_(new)
        self.step += 1
        return new.detach().clone()

    def _stack(self, losses) -> torch.Tensor:
        if isinstance(losses, torch.Tensor):
            stacked = losses
        elif isinstance(losses, (list, tuple)):
            terms = [torch.as_tensor(v) for v in losses]
            if any(t.dim() != 0 for t in terms):
                raise ValueError(f"{type(self).__name__}: every loss term must be a scalar")
            stacked = torch.stack(terms)
        else:
            raise TypeError(f"losses must be a tensor or a sequence of scalars, got {type(losses)}")
        if stacked.dim() != 1 or stacked.shape[0] != self.num_terms:
            raise ValueError(
                f"{type(self).__name__} was built for {self.num_terms} loss terms, got shape "
                f"{tuple(stacked.shape)}"
            )
        if not stacked.is_floating_point():
            stacked = stacked.to(self.dtype)
        return stacked

    def _gradients_read(self, grads):
        """``(term, parameter index, gradient)`` for every gradient :meth:`_weights` reads."""
        return [
            (i, j, g) for i, term in enumerate(grads) for j, g in enumerate(term) if g is not None
        ]

    def _refuse_non_finite(self, values: torch.Tensor, grads) -> None:
        name = type(self).__name__
        finite = torch.isfinite(values)
        if not bool(finite.all()):
            i = int(torch.nonzero(~finite)[0])
            raise FloatingPointError(
                f"{name}.update refused loss term {i}: it is {values[i].item()} (losses: "
                f"{values.tolist()}); the balancer's state is unchanged"
            )
        if grads is None or not self.needs_gradients:
            return
        for i, j, g in self._gradients_read(grads):
            if not bool(torch.isfinite(g).all()):
                raise FloatingPointError(
                    f"{name}.update refused the gradients of loss term {i}: gradient {j} has a "
                    "non-finite entry; the balancer's state is unchanged"
                )

    def _weights(self, losses: torch.Tensor, grads) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError  # pragma: no cover - abstract

    def extra_repr(self) -> str:
        return f"num_terms={self.num_terms}"


class Sum(Balancer):
    """The unweighted sum, ``lambda_i = 1``: the baseline."""

    def _weights(self, losses, grads):
        return torch.ones_like(losses), {}


class Fixed(Balancer):
    """Fixed weights chosen by hand.

    Args:
        weights: one finite weight >= 0 per term, not all zero.
    """

    def __init__(self, weights: Sequence[float], dtype: torch.dtype = torch.float32):
        values = np.asarray(weights, dtype=np.float64)
        if values.ndim != 1 or values.size == 0:
            raise ValueError(f"weights must be a non-empty 1-D sequence, got shape {values.shape}")
        if not np.all(np.isfinite(values)) or np.any(values < 0) or not np.any(values > 0):
            raise ValueError(f"weights must be finite, >= 0 and not all zero, got {weights}")
        super().__init__(values.size, dtype=dtype)
        self.register_buffer("fixed", torch.as_tensor(values, dtype=dtype))
        self.lambdas.copy_(self.fixed)

    def _weights(self, losses, grads):
        return self.fixed.clone(), {}


def _softmax_weights(ratios: torch.Tensor) -> torch.Tensor:
    """``n * softmax(ratios)``, the max subtracted first."""
    e = torch.exp(ratios - ratios.max())
    return ratios.numel() * e / e.sum()


class SoftAdapt(Balancer):
    """SoftAdapt in the relative form compared in the ReLoBRaLo article (arXiv:2110.09813):
    ``lambda = n * softmax(L(t) / (T L(t-1) + eps))``, one at step 0.

    The original SoftAdapt (Heydari et al., arXiv:1912.12355) feeds the differences
    ``L(t) - L(t-1)`` to the softmax and is not scale invariant; this form is ReLoBRaLo's
    short-term part alone.

    Args:
        num_terms: number of loss terms.
        temperature: softmax temperature T > 0.
        eps: guard in the division, in [0, 1].
    """

    def __init__(
        self,
        num_terms: int,
        temperature: float = 0.1,
        eps: float = 1e-7,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__(num_terms, dtype=dtype)
        self.temperature = _check_positive("temperature", temperature)
        self.eps = _check_range("eps", eps, 0.0, 1.0)
        self.register_buffer("previous_losses", torch.ones(self.num_terms, dtype=dtype))

    def _weights(self, losses, grads):
        if int(self.step) == 0:
            new = torch.ones_like(losses)
        else:
            new = _softmax_weights(losses / (self.temperature * self.previous_losses + self.eps))
        return new, {"previous_losses": losses}


class ReLoBRaLo(Balancer):
    """Relative Loss Balancing with Random Lookbacks (Bischof & Kraus 2021, arXiv:2110.09813).

    With ``lhat(t, t') = n * softmax(L(t) / (T L(t') + eps))``::

        lambda(t) = alpha * [rho * lambda(t-1) + (1 - rho) * lhat(t, 0)]
                    + (1 - alpha) * lhat(t, t-1)

    ``rho`` is a Bernoulli draw each step, ``rho = (u < rho_hyper)`` with one uniform ``u`` drawn
    every step (warm-up included) from a seeded ``torch.Generator``. Warm-up: weights one at
    step 0 (``L(0)`` recorded), ``lhat(1, 0)`` at step 1. The generator's state is the buffer
    ``generator_state``, so ``state_dict()`` carries it and a resumed run draws the same
    lookbacks. Defaults are the article's (PhysicsNeMo-Sym's are alpha 0.95, T 1).

    Args:
        num_terms: number of loss terms.
        alpha: decay in [0, 1].
        temperature: softmax temperature T > 0.
        rho: probability in [0, 1] of *not* looking back to step 0.
        eps: guard in the ratios.
        seed: seed of the lookback generator (``None``: a random seed).
    """

    def __init__(
        self,
        num_terms: int,
        alpha: float = 0.999,
        temperature: float = 0.1,
        rho: float = 0.99,
        eps: float = 1e-7,
        seed: int | None = None,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__(num_terms, dtype=dtype)
        self.alpha = _check_range("alpha", alpha, 0.0, 1.0)
        self.temperature = _check_positive("temperature", temperature)
        self.rho = _check_range("rho", rho, 0.0, 1.0)
        self.eps = _check_range("eps", eps, 0.0, 1.0)
        generator = torch.Generator()
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(_check_int("seed", seed, 0, 2**64 - 1))
        self.seed = seed
        n = self.num_terms
        self.register_buffer("initial_losses", torch.ones(n, dtype=dtype))
        self.register_buffer("previous_losses", torch.ones(n, dtype=dtype))
        self.register_buffer("generator_state", generator.get_state())

    def _draw(self) -> tuple[float, torch.Tensor]:
        generator = torch.Generator()
        generator.set_state(self.generator_state.cpu())
        u = torch.rand((), generator=generator, dtype=torch.float32).item()
        return u, generator.get_state()

    def _weights(self, losses, grads):
        u, state = self._draw()
        step = int(self.step)
        initial = losses if step == 0 else self.initial_losses
        T, eps = self.temperature, self.eps
        lhat_0 = _softmax_weights(losses / (T * initial + eps))
        if step == 0:
            new = torch.ones_like(losses)
        elif step == 1:
            new = lhat_0
        else:
            rho = float(u < self.rho)
            lhat_prev = _softmax_weights(losses / (T * self.previous_losses + eps))
            a = self.alpha
            new = a * (rho * self.lambdas + (1 - rho) * lhat_0) + (1 - a) * lhat_prev
        buffers = {"initial_losses": initial, "previous_losses": losses, "generator_state": state}
        return new, buffers

    def extra_repr(self) -> str:
        return (
            f"num_terms={self.num_terms}, alpha={self.alpha}, temperature={self.temperature}, "
            f"rho={self.rho}"
        )


def _flat_abs(term) -> torch.Tensor:
    parts = [g.detach().abs().reshape(-1) for g in term if g is not None]
    if not parts:
        raise ValueError("a loss term has no gradient with respect to any parameter")
    return torch.cat(parts)


def _kernels(term) -> list[torch.Tensor]:
    """The gradients of the weight matrices: parameters with ``ndim == 2`` (a ``Linear``'s
    ``weight``; its ``bias`` has ``ndim == 1``)."""
    kernels = [g.detach().abs() for g in term if g is not None and g.dim() == 2]
    if not kernels:
        raise ValueError(
            "form='authors_code' reads the gradients of the weight matrices (parameters with "
            "ndim == 2), but a loss term has none"
        )
    return kernels


class LRAnnealing(Balancer):
    """Learning-rate annealing (Wang, Teng & Perdikaris 2021, arXiv:2001.04536), in the form its
    source names (``form=``), as pinnlib.balancing.LRAnnealing states it.

    The residual keeps weight one. At steps 0, k, 2k, ... (from that step's gradients) every
    other term gets ``lhat_i = max|grad L_r| / mean|grad (lambda_i L_i)|`` and
    ``lambda_i <- (1 - a) lambda_i + a lhat_i``; between updates the weights stay. The forms:

    * ``"published"`` (default): Algorithm 2.1 of the published article, max and mean over
      *all* parameters, the weighted term ``lambda_i L_i`` in the denominator.
    * ``"authors_code"``: the authors' Helmholtz code: the max over the *weight matrices* only
      of ``|grad L_r|``, over the mean over layers of each weight matrix's mean
      ``|grad (lambda_i L_i)|``. Here a weight matrix is a parameter with ``ndim == 2`` (a
      ``torch.nn.Linear``'s ``weight``); biases (``ndim == 1``) are skipped.
    * ``"unweighted"``: max and mean over all parameters with the unweighted ``L_i`` in the
      denominator (pinnlib 0.2.0's default).

    The chapter "Balancing schemes" introduces the method.

    Args:
        num_terms: number of loss terms.
        residual_index: which term is the PDE residual.
        a: moving-average rate in (0, 1].
        update_every: update period k >= 1.
        weighted: pinnlib 0.2.0's switch: ``True`` means ``form="published"``, ``False``
            ``form="unweighted"``; ``None`` (default): use ``form``.
        eps: guard in the division.
        form: ``"published"``, ``"authors_code"`` or ``"unweighted"``.
    """

    needs_gradients = True
    FORMS = ("published", "authors_code", "unweighted")

    def __init__(
        self,
        num_terms: int,
        residual_index: int = 0,
        a: float = 0.1,
        update_every: int = 10,
        weighted: bool | None = None,
        eps: float = 1e-12,
        dtype: torch.dtype = torch.float32,
        form: str | None = None,
    ):
        super().__init__(num_terms, dtype=dtype)
        self.residual_index = _check_int("residual_index", residual_index, 0, self.num_terms - 1)
        self.a = _check_range("a", a, 0.0, 1.0, closed=False)
        self.update_every = _check_int("update_every", update_every, 1)
        self.eps = _check_range("eps", eps, 0.0, 1.0)
        if weighted is not None and not isinstance(weighted, (bool, np.bool_)):
            raise TypeError(f"weighted must be True, False or None, got {weighted!r}")
        if form is not None and form not in self.FORMS:
            raise ValueError(f"form must be one of {self.FORMS}, got {form!r}")
        implied = None if weighted is None else ("published" if weighted else "unweighted")
        if implied is not None and form is not None and form != implied:
            raise ValueError(
                f"weighted={weighted} means form={implied!r}, but form={form!r} was given: "
                "pass only form"
            )
        self.form = form or implied or "published"

    @property
    def weighted(self) -> bool:
        """Whether the denominator holds the weighted term ``lambda_i L_i``."""
        return self.form != "unweighted"

    def _gradients_read(self, grads):
        read = super()._gradients_read(grads)
        if self.form == "authors_code":
            return [(i, j, g) for i, j, g in read if g.dim() == 2]
        return read

    def _weights(self, losses, grads):
        if int(self.step) % self.update_every != 0:
            return self.lambdas.clone(), {}
        device = self.lambdas.device
        if self.form == "authors_code":
            kernels = [[k.to(self.dtype) for k in _kernels(term)] for term in grads]
            top = torch.stack([k.max() for k in kernels[self.residual_index]]).max()
            means = torch.stack(
                [torch.stack([k.mean() for k in term]).mean().to(device) for term in kernels]
            )
        else:
            flat = [_flat_abs(term).to(self.dtype) for term in grads]
            top = flat[self.residual_index].max()
            means = torch.stack([f.mean().to(device) for f in flat])
        if self.weighted:
            means = means * self.lambdas
        lhat = top.to(device) / (means + self.eps)
        lhat[self.residual_index] = 1.0
        return (1 - self.a) * self.lambdas + self.a * lhat, {}

    def extra_repr(self) -> str:
        return (
            f"num_terms={self.num_terms}, a={self.a}, every={self.update_every}, form={self.form!r}"
        )


class GradNorm(Balancer):
    """GradNorm (Chen et al. 2018, arXiv:1711.02257) as pinnlib.balancing.GradNorm states it.

    ``g_i = ||grad_W L_i||`` on the shared parameter ``W`` (index ``shared_variable`` in each
    term's gradient list; -2 is the last weight matrix of a plain MLP), ``G_i = w_i g_i``,
    ``r_i = (L_i(t)/L_i(0)) / mean_j(L_j(t)/L_j(0))`` and the constant target
    ``G*_i = mean(G) r_i^asymmetry``; the weights take one step on ``sum_i |G_i - G*_i|``,
    whose gradient is ``sign(G_i - G*_i) g_i``. A weight the step drives below ``min_weight``
    is held there (counted per term in the buffer :attr:`floor_hits`), then the weights are
    renormalised to sum to n. The step (``update=``):

    * ``"adam"`` (default): the weights' own Adam with Keras' constants (:attr:`ADAM`:
      ``beta_1 = 0.9``, ``beta_2 = 0.999``, ``epsilon = 1e-7``, bias-corrected as Keras does),
      learning rate 1e-3 by default (the ReLoBRaLo authors' code); its moments are the buffers
      ``adam_m`` and ``adam_v``. Its step is about ``learning_rate`` whatever the loss's size.
    * ``"sgd"``: plain descent, ``w <- w - learning_rate * sign(.) g`` (default rate 0.025):
      pinnlib 0.2.0's form, whose step grows with the loss's magnitude.

    The constructor's ``update`` is kept as :attr:`update_rule` (``update`` is the method).
    The chapter "Balancing schemes" introduces it.

    Args:
        num_terms: number of loss terms.
        asymmetry: the paper's alpha, in [0, 100].
        learning_rate: step of the weight update (> 0); ``None``: 1e-3 for ``"adam"``, 0.025
            for ``"sgd"``.
        shared_variable: index of the shared parameter in each gradient list.
        min_weight: floor of a weight (> 0).
        eps: guard in the divisions.
        update: ``"adam"`` or ``"sgd"``.
    """

    needs_gradients = True
    UPDATES = ("adam", "sgd")
    #: Default learning rates per update rule (the same as the TensorFlow balancer's).
    LEARNING_RATES = {"adam": 1e-3, "sgd": 0.025}
    #: Keras' Adam defaults, as in the TensorFlow balancer.
    ADAM = {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}

    def __init__(
        self,
        num_terms: int,
        asymmetry: float = 1.5,
        learning_rate: float | None = None,
        shared_variable: int = -2,
        min_weight: float = 1e-3,
        eps: float = 1e-12,
        dtype: torch.dtype = torch.float32,
        update: str = "adam",
    ):
        super().__init__(num_terms, dtype=dtype)
        if update not in self.UPDATES:
            raise ValueError(f"update must be one of {self.UPDATES}, got {update!r}")
        self.update_rule = update
        self.asymmetry = _check_range("asymmetry", asymmetry, 0.0, 100.0)
        if learning_rate is None:
            learning_rate = self.LEARNING_RATES[update]
        self.learning_rate = _check_positive("learning_rate", learning_rate)
        self.shared_variable = _check_int("shared_variable", shared_variable, -(10**6))
        self.min_weight = _check_positive("min_weight", min_weight)
        self.eps = _check_range("eps", eps, 0.0, 1.0)
        n = self.num_terms
        self.register_buffer("initial_losses", torch.ones(n, dtype=dtype))
        self.register_buffer("floor_hits", torch.zeros(n, dtype=torch.int64))
        self.register_buffer("adam_m", torch.zeros(n, dtype=dtype))
        self.register_buffer("adam_v", torch.zeros(n, dtype=dtype))

    def _gradients_read(self, grads):
        j = self.shared_variable
        return [(i, j, term[j]) for i, term in enumerate(grads) if term[j] is not None]

    def _weights(self, losses, grads):
        norms = []
        for term in grads:
            g = term[self.shared_variable]
            if g is None:
                raise ValueError("a loss term has no gradient on the shared parameter")
            norms.append(torch.linalg.vector_norm(g.detach().to(self.dtype).reshape(-1)))
        g = torch.stack(norms).to(self.lambdas.device)
        initial = losses if int(self.step) == 0 else self.initial_losses
        big = self.lambdas * g
        ratio = losses / (initial + self.eps)
        r = ratio / (ratio.mean() + self.eps)
        target = big.mean() * r**self.asymmetry
        gradient = torch.sign(big - target) * g  # d L_grad / d w_i, the target held constant
        buffers = {"initial_losses": initial}
        if self.update_rule == "sgd":
            w = self.lambdas - self.learning_rate * gradient
        else:
            b1, b2 = self.ADAM["beta_1"], self.ADAM["beta_2"]
            t = int(self.step) + 1
            m = self.adam_m + (gradient - self.adam_m) * (1 - b1)
            v = self.adam_v + (gradient.square() - self.adam_v) * (1 - b2)
            rate = self.learning_rate * math.sqrt(1 - b2**t) / (1 - b1**t)
            w = self.lambdas - rate * m / (v.sqrt() + self.ADAM["epsilon"])
            buffers.update(adam_m=m, adam_v=v)
        floor = torch.full_like(w, self.min_weight)
        buffers["floor_hits"] = self.floor_hits + (w < floor).to(torch.int64)
        w = torch.maximum(w, floor)
        return self.num_terms * w / w.sum(), buffers

    def extra_repr(self) -> str:
        return (
            f"num_terms={self.num_terms}, asymmetry={self.asymmetry}, "
            f"update={self.update_rule!r}, learning_rate={self.learning_rate}"
        )


class GlobalGradNorm(Balancer):
    """Global gradient-norm weighting (Wang, Sankaran, Wang & Perdikaris 2023, "An expert's
    guide to training physics-informed neural networks", arXiv:2308.08468), as
    pinnlib.balancing.GlobalGradNorm states it.

    Every ``update_every`` steps (at steps 0, f, 2f, ..., from that step's gradients)::

        lhat_i = sum_j ||grad L_j|| / ||grad L_i||      (L2 norms over all parameters)
        lambda <- momentum * lambda + (1 - momentum) * lhat

    The weights start at one, so the first update (step 0) gives ``0.9 + 0.1 * lhat`` with the
    default momentum. ``form="paper"`` (default) takes the sum over terms, as the guide writes
    it; ``form="jaxpi"`` the mean, as the authors' JAX code (``jaxpi``) computes it (every
    weight divided by n). Nothing is trained, unlike :class:`GradNorm`. The chapter "Balancing
    schemes" introduces it.

    Args:
        num_terms: number of loss terms.
        momentum: weight of the old value in the moving average, in [0, 1).
        update_every: update period f >= 1.
        form: ``"paper"`` (sum) or ``"jaxpi"`` (mean).
        eps: guard in the division.
    """

    needs_gradients = True
    FORMS = ("paper", "jaxpi")

    def __init__(
        self,
        num_terms: int,
        momentum: float = 0.9,
        update_every: int = 1000,
        form: str = "paper",
        eps: float = 1e-12,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__(num_terms, dtype=dtype)
        self.momentum = _check_range("momentum", momentum, 0.0, 1.0)
        if self.momentum == 1.0:
            raise ValueError("momentum must be in [0, 1), got 1.0 (the weights would never move)")
        self.update_every = _check_int("update_every", update_every, 1)
        if form not in self.FORMS:
            raise ValueError(f"form must be one of {self.FORMS}, got {form!r}")
        self.form = form
        self.eps = _check_range("eps", eps, 0.0, 1.0)

    def _weights(self, losses, grads):
        if int(self.step) % self.update_every != 0:
            return self.lambdas.clone(), {}
        norms = []
        for term in grads:
            parts = [g.detach().to(self.dtype).reshape(-1) for g in term if g is not None]
            if not parts:
                raise ValueError("a loss term has no gradient with respect to any parameter")
            norms.append(torch.linalg.vector_norm(torch.cat(parts)).to(self.lambdas.device))
        norms = torch.stack(norms)
        scale = norms.sum() if self.form == "paper" else norms.mean()
        lhat = scale / (norms + self.eps)
        return self.momentum * self.lambdas + (1 - self.momentum) * lhat, {}

    def extra_repr(self) -> str:
        return (
            f"num_terms={self.num_terms}, momentum={self.momentum}, every={self.update_every}, "
            f"form={self.form!r}"
        )


class HomoscedasticUncertainty(Balancer):
    """Homoscedastic uncertainty weighting (Kendall, Gal & Cipolla 2018, arXiv:1705.07115) in
    NVIDIA PhysicsNeMo-Sym's form, as pinnlib.balancing.HomoscedasticUncertainty states it::

        L = sum_i exp(-s_i) * L_i + s_i,      s_i = log sigma_i^2 trainable, initialised 0

    (twice Kendall et al.'s ``L_i / (2 sigma_i^2) + log sigma_i``, the same minimiser). The
    ``s_i`` are the ``nn.Parameter`` :attr:`log_variances`: pass this module's parameters to
    the optimiser with the network's. ``balancer(losses)`` counts the step, stores the weights
    ``lambda_i = exp(-s_i)`` (buffer ``lambdas``, read before the optimiser moves ``s``) and
    returns :meth:`total`, which is differentiable in the losses *and* in ``s``
    (``d total / d s_i = 1 - exp(-s_i) L_i``). The chapter "Balancing schemes" introduces it.

    Args:
        num_terms: number of loss terms.
    """

    def __init__(self, num_terms: int, dtype: torch.dtype = torch.float32):
        super().__init__(num_terms, dtype=dtype)
        self.log_variances = torch.nn.Parameter(torch.zeros(self.num_terms, dtype=dtype))

    def forward(self, losses, grads=None) -> torch.Tensor:
        """Count the step, store ``exp(-s)`` and return :meth:`total` (refuses non-finite
        losses, storing nothing)."""
        stacked = self._stack(losses)
        self.update(stacked, grads)
        return self.total(stacked)

    def total(self, losses) -> torch.Tensor:
        """``sum_i exp(-s_i) L_i + s_i``, differentiable in the losses and in ``s``."""
        stacked = self._stack(losses)
        s = self.log_variances.to(stacked.dtype)
        return torch.sum(torch.exp(-s) * stacked + s)

    def _weights(self, losses, grads):
        return torch.exp(-self.log_variances.detach()).to(self.dtype), {}
