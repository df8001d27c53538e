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
  :class:`ConFIG`) say so with ``needs_gradients = True``; the training step then passes
  ``grads=[grads of L_1, ...]``;
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


class LRAnnealing(Balancer):
    """Learning-rate annealing (Wang, Teng & Perdikaris 2021, arXiv:2001.04536, Algorithm 1).

    The residual term keeps weight one. Every ``update_every`` steps, for each other term ``i``::

        lhat_i = max_theta |grad L_residual| / mean_theta |grad L_i|
        lambda_i <- (1 - a) * lambda_i + a * lhat_i

    with ``a = 0.1``. Between updates the weights stay. Needs per-term gradients over all
    trainable variables. The paper's text divides by the gradient of the *unweighted* term (the
    default); its published code divides by that of the *weighted* term ``lambda_i L_i``
    (``weighted=True``), which settles at ``lambda_i^2 = max / mean`` instead of feeding on
    itself when ``grad L_i`` shrinks. The chapter "Balancing schemes" shows both.

    Args:
        num_terms: number of loss terms.
        residual_index: which term is the PDE residual (weight fixed at one).
        a: moving-average rate in (0, 1].
        update_every: update period in steps (>= 1); updates happen at steps 0, k, 2k, ...
        weighted: divide by ``mean |grad (lambda_i L_i)|`` as the authors' code does.
    """

    needs_gradients = True

    def __init__(
        self,
        num_terms: int,
        residual_index: int = 0,
        a: float = 0.1,
        update_every: int = 10,
        weighted: bool = False,
        eps: float = 1e-12,
        dtype: str = "float32",
        name: str | None = None,
    ):
        super().__init__(num_terms, dtype=dtype, name=name)
        self.residual_index = _check_int("residual_index", residual_index, 0, self.num_terms - 1)
        self.a = _check_range("a", a, 0.0, 1.0, closed=False)
        self.update_every = _check_int("update_every", update_every, 1)
        self.weighted = bool(weighted)
        self.eps = _check_range("eps", eps, 0.0, 1.0)

    def _weights(self, losses, grads):
        top = tf.reduce_max(_flat_abs(grads[self.residual_index]))
        means = tf.cast(tf.stack([tf.reduce_mean(_flat_abs(g)) for g in grads]), self.dtype)
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
            f"weighted={self.weighted})"
        )


class GradNorm(Balancer):
    """GradNorm (Chen et al. 2018, arXiv:1711.02257) for PINN loss terms.

    Trainable weights ``w_i`` (kept summing to ``n``). With ``g_i = ||grad_W L_i||`` on the
    shared variable ``W`` (by default the last kernel of the network, index ``-2`` of
    ``model.trainable_variables``), ``G_i = w_i * g_i``, relative inverse training rates
    ``r_i = (L_i(t)/L_i(0)) / mean_j(L_j(t)/L_j(0))`` and the constant target
    ``G*_i = mean(G) * r_i ** asymmetry``, the weights take one gradient-descent step on
    ``sum_i |G_i - G*_i|``, whose gradient is ``sign(G_i - G*_i) * g_i``, and are then
    renormalised to sum to ``n``. A weight that the step would drive below ``min_weight`` is
    held there before renormalising, so that no weight reaches zero or turns negative (the
    paper leaves this case open).

    Args:
        num_terms: number of loss terms.
        asymmetry: the paper's ``alpha`` (>= 0); 0 equalises gradient norms.
        learning_rate: step size of the weight update (> 0).
        shared_variable: index into the per-term gradient lists of the shared variable ``W``.
        min_weight: floor for a weight after the descent step (> 0).
    """

    needs_gradients = True

    def __init__(
        self,
        num_terms: int,
        asymmetry: float = 1.5,
        learning_rate: float = 0.025,
        shared_variable: int = -2,
        min_weight: float = 1e-3,
        eps: float = 1e-12,
        dtype: str = "float32",
        name: str | None = None,
    ):
        super().__init__(num_terms, dtype=dtype, name=name)
        self.asymmetry = _check_range("asymmetry", asymmetry, 0.0, 100.0)
        self.learning_rate = _check_positive("learning_rate", learning_rate)
        self.shared_variable = _check_int("shared_variable", shared_variable, -(10**6))
        self.min_weight = _check_positive("min_weight", min_weight)
        self.eps = _check_range("eps", eps, 0.0, 1.0)
        self.initial_losses = tf.Variable(
            tf.ones([self.num_terms], self.dtype), trainable=False, name="L0"
        )

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
        w = w - self.learning_rate * tf.sign(big_g - target) * g
        w = tf.maximum(w, self.min_weight)
        return n * w / tf.reduce_sum(w)

    def reset(self) -> None:
        super().reset()
        self.initial_losses.assign(tf.ones([self.num_terms], self.dtype))

    def __repr__(self) -> str:
        return f"GradNorm(num_terms={self.num_terms}, asymmetry={self.asymmetry})"


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
