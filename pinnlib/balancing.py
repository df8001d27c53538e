"""Loss balancers: how the terms of a multi-term PINN loss are weighted.

A PINN minimises a sum of terms, ``L = sum_i lambda_i * L_i`` (PDE residual, boundary and
initial conditions, ...). A *balancer* chooses the weights ``lambda_i`` during training. Every
balancer here shares one small base, :class:`Balancer`:

* call it with the sequence of scalar loss terms of this step and it returns the weighted
  total, with the weights held constant for the gradient (``tf.stop_gradient``);
* its state (weights, step counter, remembered losses, random generator) lives in tracked
  ``tf.Variable``\\ s, so ``tf.train.Checkpoint(balancer=b)`` saves and restores it, like a Keras
  metric; :meth:`Balancer.state_variables` names them all (what :class:`pinnlib.PINNModel`
  writes into Keras' ``.weights.h5`` and ``.keras`` files), and :meth:`Balancer.get_config` /
  :meth:`Balancer.from_config` rebuild a balancer from its constructor arguments;
* balancers that need per-term gradients (:class:`LRAnnealing`, :class:`GradNorm`,
  :class:`GlobalGradNorm`, :class:`ConFIG`) say so with ``needs_gradients = True``; the
  training step then passes ``grads=[grads of L_1, ...]``;
* a balancer whose weights are trained by gradient (:class:`HomoscedasticUncertainty`) holds
  them in ``tf.Variable``\\ s with ``trainable=True`` (its ``trainable_variables``) and gives
  its differentiable objective as ``total(losses)``; the training step applies their gradients
  with the run's optimizer;
* ``returns_direction = True`` (:class:`ConFIG`): the balancer defines the update direction
  itself (:meth:`ConFIG.direction`); its recorded weights are that direction's coefficients in
  the per-term gradients, so ``sum_i lambda_i grad L_i`` is the direction;
* ``needs_residuals = True`` (:class:`NTKWeights`): ``update`` also takes ``residuals=`` (a
  function returning each term's per-point residuals) and ``variables=``.

Non-finite inputs are refused, never absorbed: one NaN loss fed to ReLoBRaLo would otherwise
turn its weights (and, through ``lambda(t-1)``, every later weight) into NaN for good. Before
anything is stored, :meth:`Balancer.update` checks that every loss term (and, for the
balancers that take gradients, every per-term gradient it reads) is finite. What a refused
call does depends on where it runs:

* **eagerly** (a plain Python loop): it raises ``FloatingPointError`` naming the balancer, the
  term's index and its value (``pinnlib.train`` raises the same type for the same fault);
* **inside a** ``tf.function``: a ``tf.debugging.Assert`` raises
  ``tf.errors.InvalidArgumentError`` with the same facts in its message;
* **under XLA** (``jit_compile=True``): XLA compiles ``Assert`` to a no-op, so nothing can be
  raised; the call then returns NaN weights (so a total built from them is NaN, visibly) and
  leaves the state alone. A caller there must look at its losses itself, as pinnlib's
  training step does.

In every case the state (step, weights, remembered losses, generator) is bit-identical after
the refused call, so the next finite call gives exactly what it would have given without it:
in a graph the state changes sit inside a ``tf.cond`` on the check. A caller that has already
ensured finite inputs may pass ``check=False`` to leave out the check and the ``tf.cond``.
Balancers do not know the terms' names; the messages give the index (position in ``losses``).

This file imports only TensorFlow and NumPy so that it can be copied alone into any project.
The book introduces the schemes in the chapter "Balancing schemes" and ReLoBRaLo in "ReLoBRaLo
piece by piece".

References:
    Bischof & Kraus (2021), Multi-Objective Loss Balancing for Physics-Informed Deep Learning,
    arXiv:2110.09813 (ReLoBRaLo).
    Heydari, Thompson & Mehmood (2019), SoftAdapt, arXiv:1912.12355.
    Wang, Teng & Perdikaris (2021), Understanding and mitigating gradient flow pathologies in
    physics-informed neural networks, arXiv:2001.04536 (learning-rate annealing).
    Chen et al. (2018), GradNorm, arXiv:1711.02257.
    Wang, Sankaran, Wang & Perdikaris (2023), An expert's guide to training physics-informed
    neural networks, arXiv:2308.08468 (global gradient-norm weighting).
    Kendall, Gal & Cipolla (2018), Multi-task learning using uncertainty to weigh losses,
    arXiv:1705.07115 (homoscedastic uncertainty weighting).
    Liu, Chu & Thuerey (2024), ConFIG: towards conflict-free training of physics informed
    neural networks, arXiv:2408.11104.
    Wang, Yu & Perdikaris (2022), When and why PINNs fail to train: a neural tangent kernel
    perspective, J. Comput. Phys. 449, 110768, arXiv:2007.14527 (NTK weights).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

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
    "ConFIG",
    "NTKWeights",
]


#: ``*args`` and ``**kwargs``: not part of a get_config() dictionary.
_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


def _check_range(name: str, value: float, low: float, high: float, closed: bool = True) -> float:
    """Return ``value`` as a float or raise a ValueError naming the parameter and the range."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {value!r}") from None
    inside = low <= value <= high if closed else low < value <= high
    if math.isnan(value) or not inside:
        bracket = "[" if closed else "("
        raise ValueError(f"{name} must be in {bracket}{low}, {high}], got {value}")
    return value


def _check_int(name: str, value, low: int, high: int | None = None) -> int:
    """``value`` as an int, or a TypeError/ValueError naming the parameter and the range."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        top = "" if high is None else f", {high}"
        raise ValueError(f"{name} must be in [{low}{top}], got {value}")
    return int(value)


def _check_positive(name: str, value: float) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {value!r}") from None
    if math.isnan(value) or not value > 0 or math.isinf(value):
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return value


class Balancer(tf.Module):
    """Base class: weights ``lambdas`` (one per term), an int64 ``step`` counter, and a call.

    Subclasses implement :meth:`_weights`, which maps this step's (constant) losses to new
    weights, reading and assigning their own state variables. The base handles validation,
    the step counter and the weighted sum.

    Args:
        num_terms: number of loss terms (>= 1).
        dtype: float dtype of the state; losses of another float dtype are cast.
        name: module name.
    """

    needs_gradients = False
    #: The balancer defines the update direction itself (:class:`ConFIG`); see its docstring.
    returns_direction = False
    #: The balancer reads per-point residuals (:class:`NTKWeights`): ``update`` takes
    #: ``residuals=`` (a function returning them) and ``variables=``.
    needs_residuals = False

    def __init__(self, num_terms: int, dtype: str = "float32", name: str | None = None):
        super().__init__(name=name)
        if isinstance(num_terms, bool) or not isinstance(num_terms, (int, np.integer)):
            raise TypeError(f"num_terms must be an integer, got {num_terms!r}")
        if num_terms < 1:
            raise ValueError(f"num_terms must be >= 1, got {num_terms}")
        self.num_terms = int(num_terms)
        self.dtype = tf.as_dtype(dtype)
        if not self.dtype.is_floating:
            raise ValueError(f"dtype must be a floating dtype, got {dtype!r}")
        n = self.num_terms
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.lambdas = tf.Variable(tf.ones([n], self.dtype), trainable=False, name="lambdas")

    # -- the public call ------------------------------------------------------------------
    def __call__(self, losses: Sequence[tf.Tensor], grads=None, *, check: bool = True) -> tf.Tensor:
        """Update the weights from this step's losses and return ``sum_i lambda_i * L_i``.

        Args:
            losses: sequence (or 1-D tensor) of ``num_terms`` scalar loss terms.
            grads: for balancers with ``needs_gradients``, one list of variable gradients per
                term (``tape.gradient(L_i, variables)``); ignored otherwise.
            check: refuse non-finite inputs (see :meth:`update`).

        Returns:
            The weighted total, differentiable through the losses but not through the weights.
        """
        stacked = self._stack(losses)
        lambdas = self.update(stacked, grads, check=check)
        return tf.reduce_sum(tf.cast(lambdas, stacked.dtype) * stacked)

    def update(self, losses, grads=None, *, check: bool = True) -> tf.Tensor:
        """Compute, store and return this step's weights (constant, shape ``[num_terms]``).

        A non-finite loss term (or a non-finite entry in a per-term gradient the balancer
        reads) is refused and nothing is stored: eagerly a ``FloatingPointError``, in a
        ``tf.function`` a ``tf.errors.InvalidArgumentError``, under XLA NaN weights (the module
        docstring explains why). ``check=False`` skips the check, for a caller that has already
        made sure every input is finite; a non-finite input then poisons the state.
        """
        stacked = self._stack(losses)
        if self.needs_gradients and grads is None:
            raise ValueError(f"{type(self).__name__} needs per-term gradients: pass grads=...")
        if grads is not None and len(grads) != self.num_terms:
            raise ValueError(f"expected gradients for {self.num_terms} terms, got {len(grads)}")
        values = tf.stop_gradient(tf.cast(stacked, self.dtype))
        if not check:
            return self._commit(values, grads)
        read = self._gradients_read(grads) if self.needs_gradients else []
        if tf.executing_eagerly():
            self._refuse_non_finite(stacked, values, read)
            return self._commit(values, grads)
        ok, assertions = self._finite_in_graph(values, read)
        with tf.control_dependencies(assertions):
            return tf.cond(
                ok,
                lambda: self._commit(values, grads),
                lambda: tf.fill([self.num_terms], tf.constant(float("nan"), self.dtype)),
            )

    def _commit(self, values: tf.Tensor, grads) -> tf.Tensor:
        """The update proper: new weights from checked inputs, stored with the step count."""
        new = self._weights(values, grads)
        self.lambdas.assign(new)
        self.step.assign_add(1)
        return tf.stop_gradient(new)

    # -- refusing non-finite inputs ---------------------------------------------------------
    def _gradients_read(self, grads) -> list[tuple[int, int, tf.Tensor]]:
        """``(term, variable index, gradient)`` for every gradient :meth:`_weights` reads."""
        return [
            (i, j, g) for i, term in enumerate(grads) for j, g in enumerate(term) if g is not None
        ]

    def _refuse_non_finite(self, stacked, values, read) -> None:
        """Eagerly: a FloatingPointError naming the first non-finite term, else nothing."""
        name = type(self).__name__
        checked = values.numpy()
        bad = np.flatnonzero(~np.isfinite(checked))
        if bad.size:
            i = int(bad[0])
            raw = float(np.asarray(stacked)[i])
            value = str(checked[i])
            if math.isfinite(raw):  # finite as given, not in the balancer's dtype
                value += f" ({raw!r} overflows {self.dtype.name})"
            raise FloatingPointError(
                f"{name}.update refused loss term {i}: it is {value} (losses: "
                f"{checked.tolist()}); the balancer's state is unchanged. Skip this step or find "
                "what diverged (a too large learning rate, a bad input)."
            )
        for i, j, g in read:
            entries = np.asarray(g)
            if not np.all(np.isfinite(entries)):
                where = np.unravel_index(int(np.argmax(~np.isfinite(entries))), entries.shape)
                raise FloatingPointError(
                    f"{name}.update refused the gradients of loss term {i}: gradient {j} has "
                    f"{entries[where]} at index {tuple(int(k) for k in where)}; the balancer's "
                    "state is unchanged."
                )

    def _finite_in_graph(self, values, read):
        """In a graph: ``(all finite, [Assert ops])``; the Asserts name the first bad term."""
        name, n = type(self).__name__, self.num_terms
        finite = tf.math.is_finite(values)
        losses_ok = tf.reduce_all(finite)
        bad = tf.argmax(tf.cast(tf.logical_not(finite), tf.int32))
        assertions = [
            tf.debugging.Assert(
                losses_ok,
                [
                    f"{name}.update refused a non-finite loss: term",
                    bad,
                    "is",
                    tf.gather(values, bad),
                    "losses:",
                    values,
                    "the balancer's state is unchanged",
                ],
                summarize=max(n, 3),
            )
        ]
        if not read:
            return losses_ok, assertions
        per_term = [[] for _ in range(n)]
        for i, _, g in read:
            per_term[i].append(tf.reduce_all(tf.math.is_finite(g)))
        terms_ok = tf.stack(
            [tf.reduce_all(tf.stack(f)) if f else tf.constant(True) for f in per_term]
        )
        grads_ok = tf.reduce_all(terms_ok)
        bad_grad = tf.argmax(tf.cast(tf.logical_not(terms_ok), tf.int32))
        assertions.append(
            tf.debugging.Assert(
                grads_ok,
                [
                    f"{name}.update refused the gradients of loss term",
                    bad_grad,
                    "has a non-finite entry; the balancer's state is unchanged",
                ],
            )
        )
        return tf.logical_and(losses_ok, grads_ok), assertions

    def _stack(self, losses) -> tf.Tensor:
        if isinstance(losses, (tf.Tensor, tf.Variable, np.ndarray)):
            stacked = tf.convert_to_tensor(losses)
            count = stacked.shape[0] if stacked.shape.rank == 1 else None
        else:
            terms = [tf.convert_to_tensor(v) for v in losses]
            count = len(terms)
            if len({t.dtype for t in terms}) > 1:  # tf.stack would fail with "cannot compute Pack"
                kinds = ", ".join(f"term {i}: {t.dtype.name}" for i, t in enumerate(terms))
                raise TypeError(
                    f"{type(self).__name__}: the loss terms have different dtypes ({kinds}); "
                    "give them one dtype, e.g. tf.cast(term, tf.float32)"
                )
            stacked = tf.stack([tf.reshape(t, []) for t in terms])
        if stacked.shape.rank != 1:
            raise ValueError(f"losses must be a sequence of scalars, got shape {stacked.shape}")
        if count != self.num_terms:
            raise ValueError(
                f"{type(self).__name__} was built for {self.num_terms} loss terms, got {count}"
            )
        if not stacked.dtype.is_floating:
            stacked = tf.cast(stacked, self.dtype)
        return stacked

    def _weights(self, losses: tf.Tensor, grads) -> tf.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def reset(self) -> None:
        """Forget everything learned: weights to one, step to zero (subclasses extend)."""
        self.step.assign(0)
        self.lambdas.assign(tf.ones([self.num_terms], self.dtype))

    # -- saving --------------------------------------------------------------------------
    def state_variables(self) -> dict[str, tf.Variable]:
        """Every variable that decides the balancer's future, by attribute name.

        The ``tf.Variable`` attributes (``step``, ``lambdas``, remembered losses, ...) and, for
        each ``tf.random.Generator`` attribute, its state as ``"<name>.state"``. Restoring
        these into a balancer built with the same arguments makes it continue exactly; Keras
        saving of :class:`pinnlib.PINNModel` stores them under these names.
        """
        found = {}
        for name, value in sorted(vars(self).items()):
            if isinstance(value, tf.Variable):
                found[name] = value
            elif isinstance(value, tf.random.Generator):
                found[f"{name}.state"] = value.state
        return found

    def get_config(self) -> dict:
        """The constructor's arguments, so that ``type(b).from_config(b.get_config())`` builds
        a balancer like this one (with fresh state: see :meth:`state_variables`).

        Read from the attributes named like the arguments; a subclass with an argument it does
        not keep under its own name overrides this method.
        """
        config = {}
        for name, parameter in inspect.signature(type(self).__init__).parameters.items():
            if name == "self" or parameter.kind in _VARIADIC:
                continue
            if not hasattr(self, name):
                raise NotImplementedError(
                    f"{type(self).__name__} keeps no attribute {name!r} for its constructor "
                    "argument of that name: override get_config()"
                )
            value = getattr(self, name)
            config[name] = value.name if isinstance(value, tf.DType) else value
        return config

    @classmethod
    def from_config(cls, config: dict) -> Balancer:
        """A new balancer from :meth:`get_config`'s dictionary."""
        return cls(**config)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_terms={self.num_terms})"


class Sum(Balancer):
    """The unweighted sum, ``lambda_i = 1``: the baseline every chapter compares against."""

    def _weights(self, losses, grads):
        return tf.ones([self.num_terms], self.dtype)


class Fixed(Balancer):
    """Fixed manual weights, for the hand-tuning sweep of the chapter "Multi-objective".

    Args:
        weights: one finite, non-negative weight per term (not all zero).
    """

    def __init__(self, weights: Sequence[float], dtype: str = "float32", name: str | None = None):
        values = np.asarray(weights, dtype=np.float64)
        if values.ndim != 1 or values.size == 0:
            raise ValueError(f"weights must be a non-empty 1-D sequence, got shape {values.shape}")
        if not np.all(np.isfinite(values)) or np.any(values < 0) or not np.any(values > 0):
            raise ValueError(f"weights must be finite, >= 0 and not all zero, got {weights}")
        super().__init__(values.size, dtype=dtype, name=name)
        self.fixed = tf.constant(values, self.dtype)
        self.lambdas.assign(self.fixed)

    def _weights(self, losses, grads):
        return self.fixed

    def reset(self) -> None:
        super().reset()
        self.lambdas.assign(self.fixed)

    def get_config(self) -> dict:
        return {"weights": self.fixed.numpy().tolist(), "dtype": self.dtype.name, "name": self.name}

    def __repr__(self) -> str:
        return f"Fixed(weights={self.fixed.numpy().tolist()})"


def _softmax_weights(ratios: tf.Tensor, n: int) -> tf.Tensor:
    """``n * softmax(ratios)`` computed stably (the max is subtracted first)."""
    shifted = ratios - tf.reduce_max(ratios)
    e = tf.exp(shifted)
    return n * e / tf.reduce_sum(e)


class SoftAdapt(Balancer):
    """SoftAdapt as compared in the ReLoBRaLo article: ``n * softmax(L(t) / (T L(t-1) + eps))``.

    This is the *relative* form, i.e. ReLoBRaLo's short-term part alone, chosen so that the two
    schemes can be compared like for like. The original SoftAdapt (Heydari et al. 2019) feeds
    the *difference* ``L(t) - L(t-1)`` into the softmax; it is not scale invariant. At step 0
    (no previous loss) the weights are one.

    Args:
        num_terms: number of loss terms.
        temperature: softmax temperature ``T > 0``; small T sharpens the weights.
        eps: small positive number guarding the division.
    """

    def __init__(
        self,
        num_terms: int,
        temperature: float = 0.1,
        eps: float = 1e-7,
        dtype: str = "float32",
        name: str | None = None,
    ):
        super().__init__(num_terms, dtype=dtype, name=name)
        self.temperature = _check_positive("temperature", temperature)
        self.eps = _check_range("eps", eps, 0.0, 1.0)
        self.previous_losses = tf.Variable(
            tf.ones([self.num_terms], self.dtype), trainable=False, name="previous_losses"
        )

    def _weights(self, losses, grads):
        ratios = losses / (self.temperature * self.previous_losses + self.eps)
        new = tf.where(
            self.step > 0, _softmax_weights(ratios, self.num_terms), tf.ones_like(losses)
        )
        self.previous_losses.assign(losses)
        return new

    def __repr__(self) -> str:
        return f"SoftAdapt(num_terms={self.num_terms}, temperature={self.temperature})"


class ReLoBRaLo(Balancer):
    """Relative Loss Balancing with Random Lookbacks (Bischof & Kraus 2021, arXiv:2110.09813).

    With ``lhat(t, t') = n * softmax_i(L_i(t) / (T * L_i(t') + eps))`` the weights are::

        lambda(t) = alpha * [rho * lambda(t-1) + (1 - rho) * lhat(t, 0)]
                    + (1 - alpha) * lhat(t, t-1)

    where ``rho`` is a fresh Bernoulli draw every step with ``P(rho = 1) = rho`` (the
    hyperparameter): when it comes up 0 the scheme "looks back" to the losses of step 0. Warm
    up: at step 0 the weights are one and ``L(0)`` is recorded; at step 1 ``lambda = lhat(1, 0)``;
    from step 2 on the rule above. The weights depend only on each term's ratio to its own past,
    so multiplying a term by a constant (changing its units) leaves every weight unchanged.

    The step counter is int64 (the original code's int16 counter wrapped after 32 767 steps and
    then overwrote ``L(0)`` every step). The lookbacks come from a seeded ``tf.random.Generator``
    that is part of the checkpointed state, so a resumed run draws the same sequence.

    Args:
        num_terms: number of loss terms.
        alpha: exponential decay in [0, 1]; the article uses 0.999 (PhysicsNeMo 0.95).
        temperature: softmax temperature T > 0; the article uses 0.1 (PhysicsNeMo 1).
        rho: probability in [0, 1] of *not* looking back to step 0; the article uses 0.99.
        eps: guard in the ratios; 1e-7 suits float32.
        seed: seed of the lookback generator (``None``: nondeterministic).
    """

    def __init__(
        self,
        num_terms: int,
        alpha: float = 0.999,
        temperature: float = 0.1,
        rho: float = 0.99,
        eps: float = 1e-7,
        seed: int | None = None,
        dtype: str = "float32",
        name: str | None = None,
    ):
        super().__init__(num_terms, dtype=dtype, name=name)
        self.alpha = _check_range("alpha", alpha, 0.0, 1.0)
        self.temperature = _check_positive("temperature", temperature)
        self.rho = _check_range("rho", rho, 0.0, 1.0)
        self.eps = _check_range("eps", eps, 0.0, 1.0)
        self.seed = None if seed is None else _check_int("seed", seed, -(2**63), 2**63 - 1)
        n = self.num_terms
        self.initial_losses = tf.Variable(tf.ones([n], self.dtype), trainable=False, name="L0")
        self.previous_losses = tf.Variable(tf.ones([n], self.dtype), trainable=False, name="Lprev")
        self.generator = (
            tf.random.Generator.from_seed(seed)
            if seed is not None
            else tf.random.Generator.from_non_deterministic_state()
        )

    def _weights(self, losses, grads):
        n = self.num_terms
        T, eps = self.temperature, self.eps
        step = self.step
        # One Bernoulli draw per step, also during warm-up, so the sequence is easy to reason about.
        draw = self.generator.uniform([], dtype=tf.float32)
        rho = tf.cast(draw < self.rho, self.dtype)
        initial = tf.where(step == 0, losses, self.initial_losses)
        lhat_0 = _softmax_weights(losses / (T * initial + eps), n)
        lhat_prev = _softmax_weights(losses / (T * self.previous_losses + eps), n)
        a = tf.constant(self.alpha, self.dtype)
        decayed = a * (rho * self.lambdas + (1 - rho) * lhat_0) + (1 - a) * lhat_prev
        new = tf.where(step == 0, tf.ones_like(losses), tf.where(step == 1, lhat_0, decayed))
        self.initial_losses.assign(initial)
        self.previous_losses.assign(losses)
        return new

    def reset(self) -> None:
        super().reset()
        self.initial_losses.assign(tf.ones([self.num_terms], self.dtype))
        self.previous_losses.assign(tf.ones([self.num_terms], self.dtype))

    def __repr__(self) -> str:
        return (
            f"ReLoBRaLo(num_terms={self.num_terms}, alpha={self.alpha}, "
            f"temperature={self.temperature}, rho={self.rho})"
        )


def _flat_abs(grads) -> tf.Tensor:
    parts = [tf.reshape(tf.abs(g), [-1]) for g in grads if g is not None]
    if not parts:
        raise ValueError("a loss term has no gradient with respect to any variable")
    return tf.concat(parts, axis=0)


def _kernels(grads) -> list[tf.Tensor]:
    """The gradients of the weight matrices: those of rank 2 (a Dense kernel is ``(in, out)``,
    a bias ``(out,)``). A stacked network's kernels are ``(S, in, out)``, but the step hands each
    run's balancer its own rank-2 slice."""
    kernels = [g for g in grads if g is not None and g.shape.rank == 2]
    if not kernels:
        raise ValueError(
            "form='authors_code' reads the gradients of the weight matrices (rank-2 variables), "
            "but a loss term has none"
        )
    return kernels


class LRAnnealing(Balancer):
    """Learning-rate annealing (Wang, Teng & Perdikaris 2021, SIAM J. Sci. Comput. 43(5) A3055;
    arXiv:2001.04536), in the form its source names (``form=``).

    The residual term keeps weight one. Every ``update_every`` steps (at steps 0, k, 2k, ...,
    from that step's gradients, before they are applied), for each other term ``i``::

        lhat_i = max |grad L_r| / mean |grad (lambda_i L_i)|
        lambda_i <- (1 - a) * lambda_i + a * lhat_i

    Between updates the weights stay. The forms:

    * ``"published"`` (default): Algorithm 2.1 of the published article (eq. 2.30-2.31): max and
      mean over *all* parameters, the *weighted* term ``lambda_i L_i`` in the denominator,
      ``a = 0.1``. This is the arithmetic of pinnlib 0.2.0's ``weighted=True`` (labelled
      "code form" there, wrongly).
    * ``"authors_code"``: the authors' Helmholtz code (``Helmholtz/Helmholtz2D_model_tf.py`` in
      PredictiveIntelligenceLab/GradientPathologiesPINNs): the max over the *weight matrices*
      only (not the biases) of ``|grad L_r|``, divided by the *mean over layers* of each
      layer's mean ``|grad (lambda_i L_i)|``; every 10 steps with 0.9 / 0.1. Weight matrices
      are told by their rank: rank-2 gradients (a Dense kernel) count, rank-1 ones (biases)
      do not. Their code updates after the step, from the updated network on the same batch,
      and uses the new weight from the next step on; here the update uses the step's own
      gradients (a one-step offset).
    * ``"unweighted"``: max and mean over all parameters with the *unweighted* ``L_i`` in the
      denominator: pinnlib 0.2.0's default (``weighted=False``, labelled "paper text" there).
      Which arXiv version, if any, states it so could not be checked here; it is kept so that
      the stored first-edition study (arm ``lra``) still builds what ran.

    With the weighted denominator the update settles at ``lambda_i^2 = max / mean``; the
    unweighted one feeds on itself when ``grad L_i`` shrinks. The chapter "Balancing schemes"
    introduces the method.

    Args:
        num_terms: number of loss terms.
        residual_index: which term is the PDE residual (weight fixed at one).
        a: moving-average rate in (0, 1] (the article's alpha = 0.1).
        update_every: update period in steps (>= 1); updates happen at steps 0, k, 2k, ...
        weighted: the pinnlib 0.2.0 switch, kept working: ``True`` means ``form="published"``,
            ``False`` means ``form="unweighted"``; ``None`` (default): use ``form``.
        eps: guard in the division.
        form: ``"published"``, ``"authors_code"`` or ``"unweighted"`` (see above).
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
        dtype: str = "float32",
        name: str | None = None,
        form: str | None = None,
    ):
        super().__init__(num_terms, dtype=dtype, name=name)
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

    def get_config(self) -> dict:
        config = super().get_config()
        config["weighted"] = None  # ``form`` says it all
        return config

    def _gradients_read(self, grads):
        if self.form != "authors_code":
            return super()._gradients_read(grads)
        return [
            (i, j, g)
            for i, term in enumerate(grads)
            for j, g in enumerate(term)
            if g is not None and g.shape.rank == 2
        ]

    def _weights(self, losses, grads):
        if self.form == "authors_code":
            top = tf.reduce_max(
                tf.stack([tf.reduce_max(tf.abs(g)) for g in _kernels(grads[self.residual_index])])
            )
            means = tf.stack(
                [
                    tf.reduce_mean(tf.stack([tf.reduce_mean(tf.abs(g)) for g in _kernels(term)]))
                    for term in grads
                ]
            )
        else:
            top = tf.reduce_max(_flat_abs(grads[self.residual_index]))
            means = tf.stack([tf.reduce_mean(_flat_abs(g)) for g in grads])
        means = tf.cast(means, self.dtype)
        if self.weighted:
            means = means * self.lambdas
        lhat = tf.cast(top, self.dtype) / (means + self.eps)
        lhat = tf.tensor_scatter_nd_update(lhat, [[self.residual_index]], [1.0])
        moved = (1 - self.a) * self.lambdas + self.a * lhat
        due = tf.equal(self.step % self.update_every, 0)
        return tf.where(due, moved, self.lambdas)

    def __repr__(self) -> str:
        return (
            f"LRAnnealing(num_terms={self.num_terms}, a={self.a}, every={self.update_every}, "
            f"form={self.form!r})"
        )


class GradNorm(Balancer):
    """GradNorm (Chen et al. 2018, arXiv:1711.02257) for PINN loss terms.

    Trainable weights ``w_i`` (kept summing to ``n``). With ``g_i = ||grad_W L_i||`` on the
    shared variable ``W`` (by default the last kernel of the network, index ``-2`` of
    ``model.trainable_variables``), ``G_i = w_i * g_i``, relative inverse training rates
    ``r_i = (L_i(t)/L_i(0)) / mean_j(L_j(t)/L_j(0))`` and the constant target
    ``G*_i = mean(G) * r_i ** asymmetry``, the weights take one step on
    ``L_grad = sum_i |G_i - G*_i|``, whose gradient is ``sign(G_i - G*_i) * g_i``, and are then
    renormalised to sum to ``n``. A weight that the step would drive below ``min_weight`` is
    held there before renormalising, so that no weight reaches zero or turns negative (the
    paper leaves this case open); :attr:`floor_hits` counts, per term, the steps on which
    that happened.

    The step (``update=``):

    * ``"adam"`` (default): the weights have their own Adam optimiser, as the network has,
      the way the paper trains them (by the gradient of ``L_grad``, alongside the network) and
      the ReLoBRaLo authors' code does (``tf.keras.optimizers.Adam`` with the network's
      learning rate, 1e-3 by default). Keras' Adam written out: ``beta_1 = 0.9``,
      ``beta_2 = 0.999``, ``epsilon = 1e-7``, bias-corrected; its moments are state variables
      (``adam_m``, ``adam_v``), so checkpoints restore them. Adam's step is about
      ``learning_rate`` whatever the size of ``g``, so the weights move at the same pace for a
      loss of 1e4 as for one of 1.
    * ``"sgd"``: plain gradient descent on the raw gradient ``sign(.) * g_i``: pinnlib 0.2.0's
      form (default ``learning_rate`` 0.025), kept so that the stored first-edition study
      (arm ``gradnorm``) still builds what ran. Its step grows with the loss's magnitude: on
      Helmholtz it pinned the weights to ``min_weight`` in every study seed.

    (The ReLoBRaLo authors' code also differs from the paper in two ways not followed here:
    it parameterises the weights as a softmax, summing to one, and its ``r_i`` divides by the
    previous step's losses instead of ``L(0)``.) The chapter "Balancing schemes" introduces it.

    Args:
        num_terms: number of loss terms.
        asymmetry: the paper's ``alpha`` (>= 0); 0 equalises gradient norms.
        learning_rate: step size of the weight update (> 0); ``None``: 1e-3 for ``"adam"``,
            0.025 for ``"sgd"``.
        shared_variable: index into the per-term gradient lists of the shared variable ``W``.
        min_weight: floor for a weight after the step (> 0).
        eps: guard in the divisions.
        update: ``"adam"`` or ``"sgd"`` (see above).
    """

    needs_gradients = True
    UPDATES = ("adam", "sgd")
    #: Default learning rates: Adam's (the ReLoBRaLo authors' code: the network's, 1e-3) and
    #: pinnlib 0.2.0's for plain gradient descent.
    LEARNING_RATES = {"adam": 1e-3, "sgd": 0.025}
    #: Keras' Adam defaults, which the ReLoBRaLo authors' code used.
    ADAM = {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}

    def __init__(
        self,
        num_terms: int,
        asymmetry: float = 1.5,
        learning_rate: float | None = None,
        shared_variable: int = -2,
        min_weight: float = 1e-3,
        eps: float = 1e-12,
        dtype: str = "float32",
        name: str | None = None,
        update: str = "adam",
    ):
        super().__init__(num_terms, dtype=dtype, name=name)
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
        self.initial_losses = tf.Variable(tf.ones([n], self.dtype), trainable=False, name="L0")
        self.floor_hits = tf.Variable(tf.zeros([n], tf.int64), trainable=False, name="floor_hits")
        self.adam_m = tf.Variable(tf.zeros([n], self.dtype), trainable=False, name="adam_m")
        self.adam_v = tf.Variable(tf.zeros([n], self.dtype), trainable=False, name="adam_v")

    def get_config(self) -> dict:
        # ``update`` is kept as ``update_rule`` (``update`` is the balancer's method).
        return {
            "num_terms": self.num_terms,
            "asymmetry": self.asymmetry,
            "learning_rate": self.learning_rate,
            "shared_variable": self.shared_variable,
            "min_weight": self.min_weight,
            "eps": self.eps,
            "dtype": self.dtype.name,
            "name": self.name,
            "update": self.update_rule,
        }

    def _gradients_read(self, grads):
        """Only the shared variable's gradients enter the update, so only they are checked."""
        j = self.shared_variable
        return [(i, j, term[j]) for i, term in enumerate(grads) if term[j] is not None]

    def _weights(self, losses, grads):
        n = self.num_terms
        norms = []
        for term_grads in grads:
            g = term_grads[self.shared_variable]
            if g is None:
                raise ValueError("a loss term has no gradient on the shared variable")
            norms.append(tf.norm(tf.cast(g, self.dtype)))
        g = tf.stack(norms)
        initial = tf.where(self.step == 0, losses, self.initial_losses)
        self.initial_losses.assign(initial)
        w = self.lambdas
        big_g = w * g
        ratio = losses / (initial + self.eps)
        r = ratio / (tf.reduce_mean(ratio) + self.eps)
        target = tf.reduce_mean(big_g) * r**self.asymmetry
        gradient = tf.sign(big_g - target) * g  # d L_grad / d w_i, the target held constant
        if self.update_rule == "sgd":
            w = w - self.learning_rate * gradient
        else:
            w = w - self._adam_step(gradient)
        self.floor_hits.assign_add(tf.cast(w < self.min_weight, tf.int64))
        w = tf.maximum(w, self.min_weight)
        return n * w / tf.reduce_sum(w)

    def _adam_step(self, gradient: tf.Tensor) -> tf.Tensor:
        """Keras' Adam update of the weights for this gradient (moments stored)."""
        b1, b2 = self.ADAM["beta_1"], self.ADAM["beta_2"]
        t = tf.cast(self.step + 1, self.dtype)
        m = self.adam_m + (gradient - self.adam_m) * (1 - b1)
        v = self.adam_v + (tf.square(gradient) - self.adam_v) * (1 - b2)
        self.adam_m.assign(m)
        self.adam_v.assign(v)
        rate = self.learning_rate * tf.sqrt(1 - b2**t) / (1 - b1**t)
        return rate * m / (tf.sqrt(v) + self.ADAM["epsilon"])

    def reset(self) -> None:
        super().reset()
        n = self.num_terms
        self.initial_losses.assign(tf.ones([n], self.dtype))
        self.floor_hits.assign(tf.zeros([n], tf.int64))
        self.adam_m.assign(tf.zeros([n], self.dtype))
        self.adam_v.assign(tf.zeros([n], self.dtype))

    def __repr__(self) -> str:
        return (
            f"GradNorm(num_terms={self.num_terms}, asymmetry={self.asymmetry}, "
            f"update={self.update_rule!r}, learning_rate={self.learning_rate})"
        )


class GlobalGradNorm(Balancer):
    """Global gradient-norm weighting (Wang, Sankaran, Wang & Perdikaris 2023, "An expert's
    guide to training physics-informed neural networks", arXiv:2308.08468).

    Every ``update_every`` steps (at steps 0, f, 2f, ..., from that step's gradients, before
    they are applied)::

        lhat_i = sum_j ||grad L_j|| / ||grad L_i||      (L2 norms over all parameters)
        lambda <- momentum * lambda + (1 - momentum) * lhat

    with ``momentum = 0.9`` and ``f = 1000`` there; the weights start at one, so the first
    update gives ``0.9 + 0.1 * lhat``. Every term's weighted gradient ``lambda_i grad L_i`` then
    has (up to the moving average) the same norm. The forms:

    * ``"paper"`` (default): the sum over terms, as the guide writes it (its eq. for
      ``lhat``).
    * ``"jaxpi"``: the mean over terms, as the authors' JAX code computes it
      (``compute_weights`` in ``jaxpi/models.py`` of PredictiveIntelligenceLab/jaxpi): every
      weight is the paper's divided by ``n``, which only rescales the total (and so the
      effective learning rate). Their code updates after the optimiser's step, from the
      updated network on the same batch, at steps 0, 1000, 2000, ...; here from the step's own
      gradients before they are applied.

    Unlike Chen et al.'s :class:`GradNorm`, nothing is trained: the weights are read off the
    gradient norms, of every parameter (not one shared layer), with no target rates and no
    asymmetry. Rescaling one term by ``c`` rescales its gradient norm and so its ``lhat``
    (by ``1/c``), so the weights are *not* unchanged by a change of one term's units; rescaling
    *all* terms by one ``c`` leaves every ``lhat`` unchanged. The chapter "Balancing schemes"
    introduces it.

    Args:
        num_terms: number of loss terms.
        momentum: weight of the old value in the moving average, in [0, 1).
        update_every: update period in steps (>= 1).
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
        dtype: str = "float32",
        name: str | None = None,
    ):
        super().__init__(num_terms, dtype=dtype, name=name)
        self.momentum = _check_range("momentum", momentum, 0.0, 1.0)
        if self.momentum == 1.0:
            raise ValueError("momentum must be in [0, 1), got 1.0 (the weights would never move)")
        self.update_every = _check_int("update_every", update_every, 1)
        if form not in self.FORMS:
            raise ValueError(f"form must be one of {self.FORMS}, got {form!r}")
        self.form = form
        self.eps = _check_range("eps", eps, 0.0, 1.0)

    def _weights(self, losses, grads):
        norms = []
        for term in grads:
            parts = [tf.reshape(tf.cast(g, self.dtype), [-1]) for g in term if g is not None]
            if not parts:
                raise ValueError("a loss term has no gradient with respect to any variable")
            norms.append(tf.norm(tf.concat(parts, axis=0)))
        norms = tf.stack(norms)
        scale = tf.reduce_sum(norms) if self.form == "paper" else tf.reduce_mean(norms)
        lhat = scale / (norms + self.eps)
        moved = self.momentum * self.lambdas + (1 - self.momentum) * lhat
        due = tf.equal(self.step % self.update_every, 0)
        return tf.where(due, moved, self.lambdas)

    def __repr__(self) -> str:
        return (
            f"GlobalGradNorm(num_terms={self.num_terms}, momentum={self.momentum}, "
            f"every={self.update_every}, form={self.form!r})"
        )


class HomoscedasticUncertainty(Balancer):
    """Homoscedastic uncertainty weighting (Kendall, Gal & Cipolla 2018, arXiv:1705.07115), in
    PhysicsNeMo-Sym's form (its ``HomoscedasticUncertainty`` aggregator)::

        L = sum_i exp(-s_i) * L_i + s_i,      s_i = log sigma_i^2 trainable, initialised 0

    This is twice Kendall et al.'s ``L_i / (2 sigma_i^2) + log sigma_i`` (the 1/2 factors vary
    between papers; this form has none). The reported weights are ``lambda_i = exp(-s_i)``. For
    fixed ``L_i`` the optimum is ``s_i* = log L_i`` (then ``lambda_i L_i = 1``): each term is
    divided by an estimate of its own size.

    Unlike the other balancers, the weights are trained by gradient, with the network: the
    ``s_i`` are ``tf.Variable``\\ s with ``trainable=True`` (:attr:`log_variances`, listed by
    ``trainable_variables``), and :meth:`total` is differentiable in them. pinnlib's training
    step adds them to the variables it differentiates and applies with the run's optimizer
    (``d total / d s_i = 1 - exp(-s_i) L_i``); :meth:`update` only reads the weights and counts
    the step. This holds for :func:`pinnlib.train`, :func:`pinnlib.train_together` (stacked or
    not) and :class:`pinnlib.PINNModel`'s ``fit``; under a ``tf.distribute`` strategy it is
    refused (``NotImplementedError``: the replicas' summed gradients would scale ``s``'s step),
    and an optimizer built before the run is refused (it would not know ``s``). A loop of your
    own must do the same: ``b(losses)`` returns the total whose gradient reaches ``s``. The
    chapter "Balancing schemes" introduces it.

    Args:
        num_terms: number of loss terms.
    """

    def __init__(self, num_terms: int, dtype: str = "float32", name: str | None = None):
        super().__init__(num_terms, dtype=dtype, name=name)
        self.log_variances = tf.Variable(
            tf.zeros([self.num_terms], self.dtype), trainable=True, name="log_variances"
        )

    def __call__(self, losses: Sequence[tf.Tensor], grads=None, *, check: bool = True) -> tf.Tensor:
        """Count the step, store ``lambda = exp(-s)`` and return :meth:`total` (NaN where a
        non-finite input was refused under XLA, as for every balancer)."""
        stacked = self._stack(losses)
        lambdas = self.update(stacked, grads, check=check)
        total = self.total(stacked)
        nan = tf.constant(float("nan"), total.dtype)
        return tf.where(tf.reduce_all(tf.math.is_finite(lambdas)), total, nan)

    def total(self, losses) -> tf.Tensor:
        """``sum_i exp(-s_i) L_i + s_i``, differentiable in the losses and in ``s``; changes
        nothing."""
        stacked = self._stack(losses)
        s = tf.cast(self.log_variances, stacked.dtype)
        return tf.reduce_sum(tf.exp(-s) * stacked + s)

    def _weights(self, losses, grads):
        return tf.exp(-tf.identity(self.log_variances))

    def reset(self) -> None:
        super().reset()
        self.log_variances.assign(tf.zeros([self.num_terms], self.dtype))


def _flat_rows(grads) -> tf.Tensor:
    """The per-term gradients as the rows of an ``(n, parameters)`` float64 matrix (a missing
    gradient, ``None``, counts as zeros of its variable's size only where another term has it)."""
    sizes = []
    for j in range(len(grads[0])):
        found = [term[j] for term in grads if term[j] is not None]
        if not found:
            raise ValueError(f"no loss term has a gradient for variable {j}")
        sizes.append(found[0].shape)
    rows = []
    for term in grads:
        parts = [
            tf.zeros([int(np.prod(s))], tf.float64)
            if g is None
            else tf.reshape(tf.cast(g, tf.float64), [-1])
            for g, s in zip(term, sizes)
        ]
        rows.append(tf.concat(parts, axis=0))
    return tf.stack(rows)


def config_coefficients(gram: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """ConFIG's update as a combination of the term gradients, from their Gram matrix.

    With ``G`` the matrix whose rows are the gradients ``g_i`` (``gram = G G^T``) and ``U`` its
    rows scaled to unit length, ConFIG's direction is ``g_u = U^+ 1`` and its update
    ``g_c = (sum_i g_i . g_u / |g_u|) g_u / |g_u|``. Since ``U^+ = U^T (U U^T)^+``, the direction
    is ``g_u = sum_i (b_i / |g_i|) g_i`` with ``b = (U U^T)^+ 1``: only the small ``n x n``
    matrix of cosines is (pseudo-)inverted. Returns ``(w, cosines)`` with ``g_c = sum_i w_i g_i``
    and ``cosines[i]`` the cosine between ``g_c`` and ``g_i``. A zero gradient gets a zero unit
    row (as in the authors' code); if ``U^+ 1`` is zero (exactly opposed gradients) the update
    and the cosines are zero.
    """
    norms = tf.sqrt(tf.maximum(tf.linalg.diag_part(gram), 0.0))
    inverse = tf.math.divide_no_nan(tf.ones_like(norms), norms)
    cosines = gram * inverse[:, None] * inverse[None, :]
    b = tf.linalg.matvec(tf.linalg.pinv(cosines), tf.ones_like(norms))
    mb = tf.linalg.matvec(cosines, b)
    squared = tf.reduce_sum(b * mb)  # |g_u|^2 with g_u = U^T b
    safe = tf.where(squared > 0, squared, tf.ones_like(squared))
    # |g_c| = sum_i g_i . g_u / |g_u| = (|g| . (U U^T) b) / |g_u|; g_c = |g_c| g_u / |g_u|.
    w = b * inverse * tf.reduce_sum(norms * mb) / safe
    cos = mb / tf.sqrt(safe)
    zero = tf.zeros_like(w)
    return tf.where(squared > 0, w, zero), tf.where(squared > 0, cos, zero)


class ConFIG(Balancer):
    """Conflict-free updates, ConFIG (Liu, Chu & Thuerey 2024, arXiv:2408.11104).

    Not a weighting of the losses but a rule for the update direction. From the per-term
    gradients ``g_i`` (all trainable variables flattened into one vector), the direction
    ``g_u = U^+ 1``, where ``U`` has the unit rows ``g_i / |g_i|`` (``U^+`` the pseudo-inverse),
    has the same cosine with every ``g_i``; it is positive whenever the ``g_i`` are linearly
    independent, so the step lowers every term to first order, whichever conflicts. Its length
    is the sum of the projections of the ``g_i`` on it::

        g_c = (sum_i g_i . e) e,    e = g_u / |g_u|

    (the authors' default ``ProjectionLength`` with ``EqualWeight``; their code solves
    ``U x = 1`` by least squares, the same minimum-norm solution). pinnlib hands ``g_c`` to the
    run's optimizer (Adam by default). Their momentum variant, M-ConFIG, computes one term's gradient per step (in
    turns), keeps a moving average of each, and applies ConFIG to the averages; it is not
    implemented here.

    ``g_c`` lies in the span of the ``g_i``, so ``g_c = sum_i w_i g_i`` with coefficients ``w``
    (:func:`config_coefficients`): :meth:`update` returns and records these *equivalent
    weights*, so ``History.lambdas`` holds them and ``sum_i w_i L_i`` (what :meth:`__call__`
    returns) is a loss whose gradient, at this step, is ``g_c``. The training step applies
    ``sum_i w_i grad L_i``, which is :meth:`direction`'s ``g_c`` (to rounding). The common cosine
    between ``g_c`` and each ``g_i`` is kept in :attr:`cosines` (one entry per term: all equal
    unless the gradients are linearly dependent). The small ``n x n`` problem is solved in
    float64 whatever ``dtype`` is.

    ``returns_direction = True``: the update depends on this step's gradients, so an optimiser
    that freezes the weights (L-BFGS) refuses it. Introduced in the chapter "Balancing schemes".

    Args:
        num_terms: number of loss terms.
    """

    needs_gradients = True
    returns_direction = True

    def __init__(self, num_terms: int, dtype: str = "float32", name: str | None = None):
        super().__init__(num_terms, dtype=dtype, name=name)
        self.cosines = tf.Variable(
            tf.ones([self.num_terms], self.dtype), trainable=False, name="cosines"
        )

    def _weights(self, losses, grads):
        rows = _flat_rows(grads)
        gram = tf.linalg.matmul(rows, rows, transpose_b=True)
        w, cos = config_coefficients(gram)
        self.cosines.assign(tf.cast(cos, self.dtype))
        return tf.cast(w, self.dtype)

    def direction(self, losses, grads, *, check: bool = True) -> list[tf.Tensor]:
        """Update the state from this step and return ``g_c``, one tensor per variable.

        ``g_c = sum_i w_i g_i`` on the flattened gradients (in float64), split back to the
        variables' shapes; NaN (like the weights) for a refused step.
        """
        w = self.update(losses, grads, check=check)
        flat = tf.linalg.matvec(_flat_rows(grads), tf.cast(w, tf.float64), transpose_a=True)
        # Each variable's shape and dtype from a term that has its gradient (None: no gradient).
        like = [next(t[j] for t in grads if t[j] is not None) for j in range(len(grads[0]))]
        parts = tf.split(flat, [int(np.prod(g.shape)) for g in like])
        return [tf.cast(tf.reshape(p, g.shape), g.dtype) for p, g in zip(parts, like)]

    def reset(self) -> None:
        super().reset()
        self.cosines.assign(tf.ones([self.num_terms], self.dtype))

    def __repr__(self) -> str:
        return f"ConFIG(num_terms={self.num_terms})"


def kernel_traces(residuals, variables) -> tf.Tensor:
    """Per term, the mean over its points of ``|d r_i(x) / d theta|^2``.

    ``residuals()`` returns one residual tensor per term (any shape; every entry is one
    point's residual), computed inside this function's tape so that the per-point Jacobians
    with respect to ``variables`` can be taken: one vectorised ``GradientTape.jacobian`` per
    term. The mean is ``Tr(K_ii) / N_i``, the trace of the term's block of the neural tangent
    kernel over its number of points.
    """
    # A Keras 3 variable holds its tf.Variable in ``.value``.
    variables = [v if isinstance(v, tf.Variable) else v.value for v in variables]
    with tf.GradientTape(persistent=True, watch_accessed_variables=False) as tape:
        tape.watch(variables)
        terms = [tf.reshape(r, [-1]) for r in residuals()]
    traces = []
    for r in terms:
        jac = tape.jacobian(r, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        rows = tf.shape(r)[0]
        squares = [tf.reduce_sum(tf.reshape(tf.square(j), [rows, -1]), axis=1) for j in jac]
        traces.append(tf.reduce_mean(tf.add_n(squares)))
    del tape
    return tf.stack(traces)


class NTKWeights(Balancer):
    """Neural-tangent-kernel weights (Wang, Yu & Perdikaris 2022, J. Comput. Phys. 449, 110768;
    arXiv:2007.14527, Algorithm 1).

    The kernel ``K = J J^T`` of the residuals' Jacobian ``J = d r / d theta`` governs how fast
    gradient descent reduces each term; its block ``K_ii`` for term ``i`` has the trace
    ``Tr(K_ii) = sum_x |d r_i(x) / d theta|^2``. The paper sets

        lambda_i = Tr(K) / Tr(K_ii),    Tr(K) = sum_j Tr(K_jj),

    so that every term's weighted kernel has the same trace (the same average convergence
    rate), and recomputes it periodically. Here, every ``update_every`` steps (at the
    balancer's steps 0, k, 2k, ...), with ``T_i`` the *mean* over the term's points of
    ``|d r_i(x) / d theta|^2`` (:func:`kernel_traces`)::

        lhat_i = sum_j T_j / T_i,    lambda <- (1 - a) * lambda + a * lhat

    and between updates the weights stay. Conventions, with their sources:

    * *Mean, not sum, over points.* The loss terms are means of squared residuals, and the
      gradient flow of ``mean r_i^2`` is driven by ``K_ii / N_i``; the mean also makes terms
      with different point counts comparable. With the same number of points per term, as in
      the authors' code (``PINNsNTK``, 300 points per term), it gives the paper's weights
      exactly. The expert's guide's code (jaxpi) takes the mean too, and divides the *mean*
      over terms by it (weights ``n`` times smaller: a constant factor).
    * ``a = 1`` (default): no averaging, as the paper and its code. ``a = 0.1`` is jaxpi's
      running average (momentum 0.9).
    * ``update_every = 1000``: PhysicsNeMo-Sym's default (``run_freq``) and jaxpi's
      (``update_every_steps``); the paper's wave example updates every 100 steps.
    * The Jacobians are taken on ``points`` points of each point set of the step (evenly
      spaced rows of the step's fresh sample, which is uniform, so any fixed rows are a
      uniform subsample; the authors also estimate the trace on a batch). A term fed by
      several point sets gets ``points`` rows from each (the plate's grouped edge terms:
      ``4 * points``). The vectorised Jacobian of ``m`` residuals goes through an ``m``-point
      forward pass, so an update costs about ``m**2``: on a 2-core CPU (4 x 50 tanh, XLA)
      with ``points=128`` about 0.07 s for Helmholtz and 2.5 s for the plate (0.18 s with
      ``points=32``, 0.74 s with 64). The cost is paid only at updates (the computation sits
      inside a ``tf.cond``; between updates the step costs what ``Sum``'s does).

    PhysicsNeMo-Sym's ``NTK`` aggregator computes something else under the same name: the
    weight ``sum_j |grad sqrt(L_j)| / |grad sqrt(L_i)|`` from the gradient of each term's
    loss, no per-point Jacobian (and weight 0 between step 0 and its first update at step
    ``run_freq``); it is not implemented here.

    The balancer needs the residuals: ``update(losses, residuals=f, variables=vs)`` with ``f()``
    returning one residual tensor per term (pinnlib's training step passes the PDE's residuals
    on a subset of the step's points, and the model's trainable variables). A zero trace (a
    term no parameter moves) gives an infinite weight. The traces of the last update are kept
    in :attr:`traces`. Introduced in the chapter "Balancing schemes".

    Args:
        num_terms: number of loss terms.
        update_every: update period in steps (>= 1).
        points: points per point set used for the traces (>= 1).
        a: moving-average rate in (0, 1].
    """

    needs_residuals = True

    def __init__(
        self,
        num_terms: int,
        update_every: int = 1000,
        points: int = 128,
        a: float = 1.0,
        dtype: str = "float32",
        name: str | None = None,
    ):
        super().__init__(num_terms, dtype=dtype, name=name)
        self.update_every = _check_int("update_every", update_every, 1)
        self.points = _check_int("points", points, 1)
        self.a = _check_range("a", a, 0.0, 1.0, closed=False)
        self.traces = tf.Variable(
            tf.ones([self.num_terms], self.dtype), trainable=False, name="traces"
        )
        self._kernel_inputs = None

    def __call__(
        self, losses, grads=None, *, residuals=None, variables=None, check: bool = True
    ) -> tf.Tensor:
        """``sum_i lambda_i L_i`` after :meth:`update` (which see)."""
        stacked = self._stack(losses)
        lambdas = self.update(stacked, grads, residuals=residuals, variables=variables, check=check)
        return tf.reduce_sum(tf.cast(lambdas, stacked.dtype) * stacked)

    def update(
        self, losses, grads=None, *, residuals=None, variables=None, check: bool = True
    ) -> tf.Tensor:
        """As :meth:`Balancer.update`, with ``residuals`` (a function returning one residual
        tensor per term, evaluated only when an update is due) and ``variables`` (the
        parameters ``theta`` of the Jacobians)."""
        if not callable(residuals):
            raise TypeError(
                "NTKWeights.update needs residuals=: a function returning one per-point "
                f"residual tensor per term, got {residuals!r}"
            )
        if variables is None or not list(variables):
            raise ValueError("NTKWeights.update needs variables=: the parameters theta")
        self._kernel_inputs = (residuals, list(variables))
        try:
            return super().update(losses, grads, check=check)
        finally:
            self._kernel_inputs = None

    def _fresh(self):
        residuals, variables = self._kernel_inputs
        traces = tf.cast(kernel_traces(residuals, variables), self.dtype)
        if traces.shape[0] != self.num_terms:
            raise ValueError(
                f"residuals() gave {traces.shape[0]} terms, the balancer has {self.num_terms}"
            )
        lhat = tf.reduce_sum(traces) / traces
        return (1 - self.a) * self.lambdas + self.a * lhat, traces

    def _weights(self, losses, grads):
        due = tf.equal(self.step % self.update_every, 0)
        new, traces = tf.cond(
            due, self._fresh, lambda: (self.lambdas.read_value(), self.traces.read_value())
        )
        self.traces.assign(traces)
        return new

    def reset(self) -> None:
        super().reset()
        self.traces.assign(tf.ones([self.num_terms], self.dtype))

    def __repr__(self) -> str:
        return (
            f"NTKWeights(num_terms={self.num_terms}, update_every={self.update_every}, "
            f"points={self.points}, a={self.a})"
        )
