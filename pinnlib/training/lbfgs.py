"""L-BFGS fine-tuning after Adam: :func:`lbfgs` and :meth:`pinnlib.Trainer.lbfgs`.

Raissi, Perdikaris & Karniadakis (J. Comput. Phys. 378, 2019; arXiv 1711.10561) trained their
PINNs with L-BFGS on a fixed set of collocation points, and Rathore et al. (ICML 2024, "Challenges
in training PINNs: a loss landscape perspective", arXiv 2402.01868) found Adam followed by L-BFGS
better than either alone. This module runs that second phase (issue #23: no chapter of the book
introduces it yet)::

    points: drawn ONCE from the run's sampler (L-BFGS's curvature pairs need one fixed function)
    λ: the balancer's last weights, frozen (a weight that moves would change the function too)
    f(θ) = Σ_i λ_i · L_i(θ; points),  ∇f(θ)   one compiled function, float64 flat vector out
    SciPy's L-BFGS-B (scipy.optimize.minimize, jac=True) on the flat vector of all weights

SciPy is already a dependency of pinnlib, and its L-BFGS-B is the long-kept Fortran code of
Byrd, Lu, Nocedal & Zhu, so nothing here is hand-written optimisation; TensorFlow Probability's
``lbfgs_minimize`` would add TFP and ``tf-keras`` to the dependencies. The iterations continue
the step numbers of the Adam phase in the same :class:`~pinnlib.training.history.History`
(one row of losses and weights per iteration: the losses at the iterate, before the iteration
moves it, as an Adam row holds the losses before its step), with evaluations every
``eval_every`` iterations, and ``History.phases`` marks where L-BFGS starts.

What it refuses, with the reason: a balancer that returns an update direction instead of
weights (``returns_direction``, e.g. ConFIG: there are no weights to freeze); runs stacked or
trained together (one L-BFGS per network: train them one by one); a ``tf.distribute``
strategy. There is no checkpoint inside the phase: SciPy's L-BFGS memory (the last
``history_size`` curvature pairs) lives in Fortran work arrays that cannot be saved and
restored, so an interrupted phase must be rerun (it is short: hundreds of iterations). A loss
term that turns NaN or infinite stops the phase with
:class:`~pinnlib.training.step.NonFiniteLossError`, the weights set back to the last iterate.
"""

from __future__ import annotations

import time

import keras
import numpy as np
import scipy.optimize
import tensorflow as tf

from ..balancing import Balancer
from ..pdes.base import PDE
from ..validation import check_float, check_int
from .history import History
from .loop import _Evaluation
from .runs import RunLayout, SeparateRuns, check_jit_compile
from .step import NonFiniteLossError

__all__ = ["lbfgs", "lbfgs_layout"]


def _frozen_weights(balancer: Balancer, dtype: tf.DType) -> tf.Tensor:
    """The balancer's last weights as a constant; a ValueError when there are none to freeze."""
    if getattr(balancer, "returns_direction", False):
        raise ValueError(
            f"L-BFGS cannot use {type(balancer).__name__}: it returns an update direction, not "
            "weights, so there is no fixed loss Σ λ_i L_i for L-BFGS to minimise; fine-tune "
            "with a weighting balancer (e.g. Sum, or Fixed with chosen weights)"
        )
    weights = balancer.lambdas.numpy()
    if not np.all(np.isfinite(weights)):
        raise ValueError(f"the balancer's last weights are not finite: {weights}")
    return tf.constant(weights, dtype)


class _Objective:
    """``f(θ)`` and ``∇f(θ)`` on a flat float64 vector, for SciPy; remembers the terms of the
    points it was evaluated at, so that an iteration's row needs no second evaluation."""

    def __init__(self, run, points, weights, jit_compile: bool):
        self.run, self.variables = run, run.model.trainable_variables
        self.shapes = [tuple(v.shape) for v in self.variables]
        self.sizes = [int(np.prod(s)) for s in self.shapes]
        self.points, self.weights, self.seen = points, weights, {}
        self.compute = tf.function(self._compute, jit_compile=jit_compile, autograph=False)

    def _compute(self):
        with tf.GradientTape() as tape:
            terms = self.run.pde.losses(self.run.model, self.points, mode=self.run.derivative_mode)
            losses = tf.stack([tf.convert_to_tensor(t) for t in terms])
            total = tf.reduce_sum(self.weights * losses)
        grads = tape.gradient(total, self.variables)
        grads = [tf.zeros_like(v) if g is None else g for g, v in zip(grads, self.variables)]
        flat = tf.concat([tf.reshape(tf.cast(g, tf.float64), [-1]) for g in grads], axis=0)
        return losses, tf.cast(total, tf.float64), flat

    def get(self) -> np.ndarray:
        return np.concatenate([v.numpy().astype(np.float64).ravel() for v in self.variables])

    def set(self, x: np.ndarray) -> None:
        for v, part, shape in zip(
            self.variables, np.split(x, np.cumsum(self.sizes)[:-1]), self.shapes
        ):
            v.assign(part.reshape(shape).astype(tf.as_dtype(v.dtype).as_numpy_dtype))

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        self.set(x)
        losses, total, flat = self.compute()
        losses = losses.numpy().astype(np.float64)
        self.seen = {x.tobytes(): losses}  # L-BFGS-B reports the last point it evaluated
        if not np.all(np.isfinite(losses)):
            raise _NonFinite(losses)
        return float(total.numpy()), flat.numpy()

    def losses_at(self, x: np.ndarray) -> np.ndarray:
        found = self.seen.get(x.tobytes())
        if found is None:
            self(x)
            found = self.seen[x.tobytes()]
        return found


class _NonFinite(Exception):
    def __init__(self, losses):
        self.losses = losses


def lbfgs_layout(
    layout: RunLayout,
    iterations: int,
    n_interior: int,
    n_boundary: int,
    eval_every: int | None = None,
    eval_points: int = 256,
    tolerance: float = 0.0,
    history_size: int = 50,
) -> History:
    """L-BFGS on the one run of ``layout`` (the engine of :func:`lbfgs` and
    :meth:`pinnlib.Trainer.lbfgs`); returns the run's history, extended."""
    iterations = check_int("iterations", iterations, 1)
    eval_every = (
        max(iterations // 20, 1) if eval_every is None else check_int("eval_every", eval_every, 1)
    )
    eval_points = check_int("eval_points", eval_points, 2)
    tolerance = check_float("tolerance", tolerance, 0)
    history_size = check_int("history_size", history_size, 1)
    if not isinstance(layout, SeparateRuns) or len(layout.runs) != 1:
        raise ValueError(
            "L-BFGS fine-tunes one run: runs stacked or trained together (or a layout under "
            "a tf.distribute strategy) are refused, since SciPy's L-BFGS moves one vector of "
            "one network's weights; fine-tune each network with pinnlib.lbfgs"
        )
    (run,) = layout.runs
    run.pde.check_sizes(n_interior, n_boundary)
    weights = _frozen_weights(run.balancer, run.dtype)
    history = run.history
    first = int(history.step[-1]) + 1 if history.step.size else 0
    points = run.pde.sample(int(n_interior), int(n_boundary), run.generator, run.dtype)
    objective = _Objective(run, points, weights, layout.jit_compile)
    evaluation = layout.evaluations.get(eval_points)
    if evaluation is None:
        evaluation = layout.evaluations[eval_points] = _Evaluation(layout, eval_points)
    lambdas = weights.numpy().astype(np.float64)

    def evaluate(step: int) -> None:
        rel, mse = evaluation.errors().numpy()[0]
        history.record_evaluation(step, rel, mse, round(layout.seconds, 4))  # no learning rate

    seconds_before = layout.seconds
    history.start_phase("lbfgs", first)
    if not history.eval_step.size or history.eval_step[-1] != first:
        evaluate(first)
    state = {"x": objective.get(), "done": 0, "clock": time.perf_counter()}
    state["losses"] = objective.losses_at(state["x"])

    def after_iteration(intermediate_result) -> None:
        x = np.asarray(intermediate_result.x, np.float64)
        history.extend(first + state["done"], state["losses"][None], lambdas[None])
        state["done"] += 1
        state["x"], state["losses"] = x, objective.losses_at(x)
        if state["done"] % eval_every == 0:
            layout.seconds += time.perf_counter() - state["clock"]
            objective.set(x)
            evaluate(first + state["done"])
            state["clock"] = time.perf_counter()

    options = {
        "maxiter": iterations,
        "maxfun": max(15000, 4 * iterations),
        "maxcor": history_size,
        "maxls": 50,
        "ftol": tolerance,
        "gtol": tolerance,
    }
    try:
        result = scipy.optimize.minimize(
            objective, state["x"], jac=True, method="L-BFGS-B", callback=after_iteration,
            options=options,
        )  # fmt: skip
    except _NonFinite as error:
        objective.set(state["x"])
        i = int(np.argmax(~np.isfinite(error.losses)))
        step = first + state["done"]
        raise NonFiniteLossError(
            run.pde.term_names[i], error.losses[i], step, None, [history]
        ) from None
    layout.seconds += time.perf_counter() - state["clock"]
    objective.set(np.asarray(result.x, np.float64))
    end = first + state["done"]
    if history.eval_step[-1] != end:
        evaluate(end)
    history.info["lbfgs"] = {
        "iterations": int(result.nit),
        "function_evaluations": int(result.nfev),
        "message": str(result.message),
        "n_interior": int(n_interior),
        "n_boundary": int(n_boundary),
        "frozen_lambdas": [float(w) for w in lambdas],
        "seconds": round(layout.seconds - seconds_before, 3),
    }
    return history


def lbfgs(
    model: keras.Model,
    pde: PDE,
    balancer: Balancer | None = None,
    iterations: int = 500,
    n_interior: int = 1024,
    n_boundary: int = 1024,
    seed: int | None = None,
    history: History | None = None,
    eval_every: int | None = None,
    eval_points: int = 256,
    derivative_mode: str = "auto",
    jit_compile: bool = True,
    tolerance: float = 0.0,
    history_size: int = 50,
) -> History:
    """Fine-tune ``model`` with L-BFGS on one fixed point set, the balancer's weights frozen.

    Typically after :func:`pinnlib.train`: ``h = pinnlib.train(model, pde, balancer, ...)``,
    then ``pinnlib.lbfgs(model, pde, balancer, 500, history=h)`` continues ``h``.
    (:meth:`pinnlib.Trainer.lbfgs` does the same from a trainer, drawing the points from its
    sampler.)

    Args:
        model: the network (its weights are moved in place).
        pde: the problem.
        balancer: whose last weights ``balancer.lambdas`` are frozen (default
            :class:`pinnlib.Sum`: all ones). Refused when it returns a direction (ConFIG).
        iterations: the most L-BFGS iterations (SciPy's ``maxiter``; it may stop earlier when
            the line search finds no decrease).
        n_interior, n_boundary: the fixed collocation points, drawn once.
        seed: seed of the generator that draws them (``None``: nondeterministic).
        history: a :class:`~pinnlib.training.history.History` to continue (same loss terms);
            default a new one starting at step 0.
        eval_every: measure the error every this many iterations (default ``iterations/20``).
        eval_points: grid points per axis for the error.
        derivative_mode: ``"auto"``, ``"forward"`` or ``"tape"``.
        jit_compile: XLA-compile the function computing the loss and its gradient.
        tolerance: SciPy's ``ftol`` and ``gtol`` (default 0: run all ``iterations`` unless
            the line search stalls).
        history_size: curvature pairs kept (SciPy's ``maxcor``; 50 as Raissi et al.).

    Returns:
        The history, with ``phases`` marking the L-BFGS phase and ``info["lbfgs"]`` what SciPy
        reported (iterations, function evaluations, message) and the phase's seconds
        (``info["steps"]`` and ``info["seconds"]`` stay those of the Adam phase; ``time`` at
        the evaluations runs on through both).
    """
    from .runs import Run

    check_jit_compile(jit_compile)
    run = Run(model, pde, balancer, None, seed, n_interior, n_boundary, derivative_mode)
    if history is not None:
        if not isinstance(history, History):
            raise TypeError(f"history must be a pinnlib History, got {type(history).__name__}")
        if tuple(history.term_names) != tuple(pde.term_names):
            raise ValueError(
                f"the history's loss terms {history.term_names} are not the PDE's {pde.term_names}"
            )
        run.history = history
    layout = SeparateRuns([run], jit_compile)
    return lbfgs_layout(
        layout, iterations, n_interior, n_boundary, eval_every, eval_points, tolerance,
        history_size,
    )  # fmt: skip
