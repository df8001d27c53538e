"""The one training step: loss terms, finiteness guard, balancer, weighted gradients, apply.

Every way pinnlib trains goes through :func:`balanced_step`: a single run
(:class:`pinnlib.Trainer`), several runs stacked into one batched network
(:func:`pinnlib.train_together`) and the Keras path (:class:`pinnlib.PINNModel`)::

    losses L_i  ──► all finite? ──no──► skip: nothing changes, λ = NaN, halted = True
                        │yes
                        ▼
    balancer: λ = update(L)  (constants: no gradient flows through them)
                        ▼
    gradient of Σ_i λ_i L_i  (one backward pass, or Σ_i λ_i ∇L_i from per-term gradients
                        ▼      when the balancer needs those)
    optimizer.apply, step counter + 1

A balancer with trainable variables (:class:`~pinnlib.balancing.HomoscedasticUncertainty`'s
log-variances) has them differentiated through its ``total`` at the step's losses and applied
with the same optimizer, in the same ``apply``; for every other balancer nothing changes.

In the compiled step only the balancer update and ``optimizer.apply`` sit in the guard's
branches; the gradient is computed either way (with zero weights on a skipped step, and then
discarded). With the backward pass inside a branch, the step took 5-10 % more wall time and
3-17 % more CPU time on a 2-core CPU (Helmholtz, Burgers, Kirchhoff, measured in turns in one
process). Our reading, not checked in XLA's output: a branch is compiled as a computation of its
own, which receives the forward pass's intermediates and is not optimised together with it.

The guard runs *before* the optimizer and the balancer see the step, so a NaN or infinite loss
term leaves weights, optimizer moments and balancer state as they were (Bischof & Kraus 2021
keep the weights in the balancer's memory: one NaN there would poison every later step). Once
``halted`` is set, later calls skip too, until the caller (which reads the losses back only
every few steps) clears it; it then raises :class:`NonFiniteLossError` naming the run, step and
term. Introduced in the chapter "A PINN from scratch"; the stacked form in "Derivatives for
PINNs".

Across several devices (:mod:`pinnlib.training.distributed`, appendix "Scaling out") the same
step runs on every replica; a ``sync`` object then takes the guard's branch and the balancer
update once for all replicas, so that every replica applies the same weights.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import keras
import tensorflow as tf

from ..balancing import Balancer

__all__ = ["NonFiniteLossError", "balanced_step"]


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or infinite; training stopped before applying that step.

    A ``FloatingPointError``, so code that catches that keeps working.

    Attributes:
        term: the name of the first non-finite term.
        value: its value (``nan``, ``inf`` or ``-inf``).
        step: the step whose losses were not finite (it was not applied).
        run: the index of the failing run among several, ``None`` for a single run.
        histories: the :class:`~pinnlib.training.history.History` of every run so far.
        history: the failing run's history (``None`` where none is kept, e.g. in ``fit``).
    """

    def __init__(self, term: str, value: float, step: int, run: int | None = None, histories=()):
        self.term, self.value, self.step, self.run = term, float(value), int(step), run
        self.histories = list(histories)
        self.history = self.histories[run or 0] if self.histories else None
        where = "" if run is None else f"run {run}: "
        if run is None:
            stopped, kept = "training stopped", "the history so far is in error.history"
        else:
            stopped = "training of all runs stopped"
            kept = "the histories so far are in error.histories"
        if not self.histories:
            kept = "no step after it was applied"
        super().__init__(
            f"{where}loss term {term!r} became {self.value} at step {self.step}; {stopped} before "
            f"applying that step ({kept})"
        )


#: Float dtypes as TensorFlow's messages name them ("float", "double" in eager kernels).
_DTYPE_WORDS = re.compile(r"\b(bfloat16|float16|half|float32|float64|float|double)\b")
_SAME = {"half": "float16", "float": "float32", "double": "float64"}


def _loss_terms(loss_terms: Callable, names: Sequence[str] | None) -> list[tf.Tensor]:
    """The loss terms, all of one dtype; a TypeError that says why when they are not.

    Two ways a PDE mixes float32 and float64: terms that come back in different dtypes
    (``tf.stack`` would say "cannot compute Pack"), or an operation inside the residuals that
    meets both (a float32 constant in a float64 model); TensorFlow's message then names an op,
    not the cause, so the cause is added.
    """
    try:
        terms = [tf.convert_to_tensor(t) for t in loss_terms()]
    except (TypeError, ValueError, tf.errors.InvalidArgumentError) as error:
        found = {_SAME.get(w, w) for w in _DTYPE_WORDS.findall(str(error))}
        if len(found) < 2:
            raise
        first = str(error).strip().splitlines()[0]
        raise TypeError(
            f"computing the loss terms mixed {' and '.join(sorted(found))} tensors ({first}). "
            "Every tensor in a PDE's residuals must have the dtype of the "
            "points, which is the model's (float64 for pinnlib.mlp(..., dtype='float64')): "
            "create constants with dtype=points.dtype, or tf.cast them"
        ) from error
    if len({t.dtype for t in terms}) > 1:
        labels = names if names is not None and len(names) == len(terms) else range(len(terms))
        kinds = ", ".join(f"{n!r}: {t.dtype.name}" for n, t in zip(labels, terms))
        raise TypeError(
            f"the loss terms have different dtypes ({kinds}); a PDE's terms must all have the "
            "model's dtype: tf.cast them in the PDE"
        )
    return terms


def _gradients(tape, term, variables) -> list[tf.Tensor]:
    """Gradient of one loss term; zeros for variables it does not depend on (e.g. the output
    bias for a term made of derivatives only)."""
    grads = tape.gradient(term, variables)
    return [tf.zeros_like(v) if g is None else g for g, v in zip(grads, variables)]


def _scaled(weight: tf.Tensor, grad: tf.Tensor) -> tf.Tensor:
    """``weight * grad``; a weight per stacked run (shape ``(S,)``) scales slice ``s``."""
    if weight.shape.rank == 0:
        return weight * grad
    return tf.reshape(weight, [-1] + [1] * (grad.shape.rank - 1)) * grad


def _weights(
    balancers: Sequence[Balancer], losses: tf.Tensor, per_term, kernel: dict | None = None
) -> tf.Tensor:
    """This step's weights, shaped like ``losses``: one balancer per run. ``kernel``: the
    ``residuals`` and ``variables`` a balancer with ``needs_residuals`` reads."""
    if losses.shape.rank == 1:  # one run
        (balancer,) = balancers
        grads = per_term if balancer.needs_gradients else None
        extra = kernel if balancer.needs_residuals else {}
        # check=False: the guard has already seen that every loss is finite.
        return tf.cast(balancer.update(losses, grads, check=False, **extra), losses.dtype)
    rows = []
    for s, balancer in enumerate(balancers):  # run s owns slice s of every gradient
        grads = [[g[s] for g in term] for term in per_term] if balancer.needs_gradients else None
        rows.append(tf.cast(balancer.update(losses[s], grads, check=False), losses.dtype))
    return tf.stack(rows)


def _balancer_gradients(balancers: Sequence[Balancer], losses: tf.Tensor):
    """``(variables, gradients)`` of the balancers' trainable variables (e.g. the log-variances
    of :class:`~pinnlib.balancing.HomoscedasticUncertainty`): the gradient of each balancer's
    ``total`` at this step's losses, held constant. Empty lists for balancers without any."""
    variables, grads = [], []
    rows = [losses] if losses.shape.rank == 1 else tf.unstack(losses)
    for balancer, row in zip(balancers, rows):
        own = list(balancer.trainable_variables)
        if not own:
            continue
        with tf.GradientTape() as tape:
            total = balancer.total(tf.stop_gradient(row))
        found = tape.gradient(total, own)
        grads += [tf.zeros_like(v) if g is None else g for g, v in zip(found, own)]
        variables += own
    return variables, grads


def balanced_step(
    loss_terms: Callable[[], Sequence[tf.Tensor]],
    variables: Sequence[tf.Variable],
    balancers: Sequence[Balancer],
    optimizer: keras.optimizers.Optimizer,
    halted: tf.Variable,
    counter: tf.Variable,
    names: Sequence[str] | None = None,
    sync=None,
    residuals: Callable[[], Sequence[tf.Tensor]] | None = None,
) -> tuple[tf.Tensor, tf.Tensor]:
    """One guarded, balanced gradient step; call it inside a ``tf.function``.

    Args:
        loss_terms: returns the loss terms, one tensor per term name: scalars for one run, or
            ``(S,)`` vectors for ``S`` stacked runs, where run ``s`` depends only on slice ``s``
            (leading axis) of every variable.
        variables: the trainable variables (the optimizer must already be built for them and
            for the balancers' ``trainable_variables``, which the step adds to them).
        balancers: one balancer per run.
        optimizer: applies the weighted gradients.
        halted: a boolean variable; a non-finite loss sets it and, while it is set, the step
            is skipped.
        counter: an integer variable counting the applied steps.
        names: the terms' names, for the message when their dtypes differ.
        sync: ``None`` on one device; on the replicas of a ``tf.distribute`` strategy, a
            :class:`~pinnlib.training.distributed.CrossReplicaSync`, whose ``cond`` replaces
            ``tf.cond`` and whose ``weights`` runs the balancer update once from the
            all-reduced losses and per-term gradients.
        residuals: for a balancer with ``needs_residuals`` (:class:`~pinnlib.NTKWeights`), a
            function returning each term's per-point residuals on (a subset of) this step's
            points; the balancer calls it, inside its own ``tf.cond``, only when it updates.
            A balancer with ``returns_direction`` (:class:`~pinnlib.ConFIG`) needs no more:
            its recorded weights are the coefficients of its direction in the per-term
            gradients, so the weighted sum below *is* the direction it returns.

    Returns:
        ``(losses, lambdas)``: shape ``(terms,)`` for one run, ``(S, terms)`` for a stack;
        ``lambdas`` is NaN where the step was skipped.
    """
    needs = any(b.needs_gradients for b in balancers)
    kernel = None
    if any(b.needs_residuals for b in balancers):
        if residuals is None or len(balancers) > 1 or sync is not None:
            name = next(type(b).__name__ for b in balancers if b.needs_residuals)
            raise ValueError(
                f"{name} needs the per-point residuals of the step (needs_residuals), which "
                "this step is not given: only a single run on one device passes them"
            )
        kernel = {"residuals": residuals, "variables": variables}
    with tf.GradientTape(persistent=needs) as tape:
        terms = _loss_terms(loss_terms, names)
        losses = tf.stack(terms, axis=-1)
    go = tf.logical_and(tf.reduce_all(tf.math.is_finite(losses)), tf.logical_not(halted))
    cond = tf.cond if sync is None else sync.cond
    per_term = [_gradients(tape, t, variables) for t in terms] if needs else None

    def weigh():
        if sync is None:
            return _weights(balancers, losses, per_term, kernel)
        return sync.weights(lambda v, g: _weights(balancers, v, g), losses, per_term)

    def skip():
        return tf.fill(tf.shape(losses), tf.constant(float("nan"), losses.dtype))

    lambdas = cond(go, weigh, skip)
    # The backward pass runs outside the branches (the module docstring says why). A skipped
    # step's weights are NaN, so it takes zeros here; its gradients are thrown away below.
    used = tf.where(go, lambdas, tf.zeros_like(lambdas))
    if needs:
        grads = [
            tf.add_n([_scaled(used[..., i], term[j]) for i, term in enumerate(per_term)])
            for j in range(len(variables))
        ]
    else:  # one backward pass of sum_i lambda_i L_i, lambda held constant
        grads = tape.gradient(losses, variables, output_gradients=used)

    # Balancers trained by gradient: their variables join the model's, with the run's optimizer.
    extra, extra_grads = _balancer_gradients(balancers, losses)

    def apply():
        if extra:
            optimizer.apply(list(grads) + extra_grads, list(variables) + extra)
        else:
            optimizer.apply(grads, variables)
        counter.assign_add(1)
        return tf.constant(True)

    cond(go, apply, lambda: tf.constant(False))
    halted.assign(tf.logical_or(halted, tf.logical_not(go)))
    return losses, lambdas
