"""Data-parallel training on several devices with ``tf.distribute`` (appendix "Scaling out").

``pinnlib.train(..., strategy=tf.distribute.MirroredStrategy(), jit_compile=False)`` trains one
run on every device the strategy holds: each device keeps a mirrored copy of the network and
computes the loss terms on its share of the step's collocation points. It is one more layout of
the one engine (:class:`MirroredRuns`, next to those of :mod:`pinnlib.training.runs`): every
replica runs :func:`~pinnlib.training.step.balanced_step`, and the Python loop is
:func:`~pinnlib.training.loop.train_runs`. What the layout adds makes ``R`` replicas train
exactly as one device with all the points would (to float32 rounding)::

    across replicas:  PDE.sample(n_interior, n_boundary)     the stream one device draws
                         │ replica r keeps rows r·n/R … (r+1)·n/R of every point set
    replica r:        model ─► its terms L_i^r ─► all-reduce (mean) ─► L_i, the mean over all
                         │ (on replica r the gradient of L_i is ∇L_i^r / R)
    across replicas:  finite? and the balancer update, once, from the all-reduced L_i
                         │ (and ∇L_i, for LRAnnealing and GradNorm): the same λ everywhere
    replica r:        ∇(Σ λ_i L_i^r) / R ─► optimizer, which sums over the replicas

Why each piece is there:

* **Points.** A ``tf.random.Generator`` created under a strategy mixes the replica's id into
  its key when a replica calls it, so sampling on the replicas would give each its own stream,
  none of them the one a single device draws. The layout draws the step's points once, across
  replicas, from the run's one (mirrored) generator state, and each replica keeps an equal,
  contiguous share. Every point set must therefore split evenly over the replicas
  (``ValueError`` otherwise); then the mean of the replicas' mean losses is the mean over all
  points, for loss terms that are means over points (as :meth:`pinnlib.PDE.losses` are).
* **Guard and balancer.** TensorFlow cannot run a ``tf.cond`` on a replica whose branch
  synchronises the replicas (the optimizer's all-reduce does). :class:`CrossReplicaSync` takes
  the guard's branch across replicas (Keras's ``LossScaleOptimizer`` does the same), and the
  balancer update runs there too, once per step: ReLoBRaLo's Bernoulli draws come from its one
  generator state, and every replica receives the same weights.
* **Per-term gradients.** :class:`~pinnlib.balancing.LRAnnealing` and
  :class:`~pinnlib.balancing.GradNorm` read the gradient of every term. Each replica holds
  ``∇L_i^r / R``; their sum (one all-reduce per term and step, the cost of using them here) is
  the gradient of the global mean, which the balancer reads, as on one device.
* **State.** The model, optimizer and balancer must be created inside ``strategy.scope()``
  (``ValueError`` otherwise), like any Keras model trained under a strategy; the trainer
  creates its own state (sampler, step counter, default ``Adam`` and ``Sum``) there. The
  checkpoint holds the same objects as on one device, so a run saved on one device resumes
  under a strategy and the other way round.
* **No XLA.** The cross-replica synchronisation goes through ``merge_call``, which XLA cannot
  compile, and on CPU devices XLA cannot compile one function that touches variables on several
  devices either, so ``jit_compile=True`` raises a ``ValueError`` instead of silently running
  something else. The appendix "Scaling out" measures what this costs.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import tensorflow as tf

from .runs import Run, RunLayout, SeparateRuns, check_jit_compile
from .step import balanced_step

__all__ = [
    "STRATEGIES",
    "CrossReplicaSync",
    "MirroredRuns",
    "check_created_in_scope",
    "check_strategy",
    "one_run_layout",
]

#: The strategies pinnlib trains under (data parallelism with mirrored variables, on one
#: machine or on several with ``TF_CONFIG``).
STRATEGIES = (tf.distribute.MirroredStrategy, tf.distribute.MultiWorkerMirroredStrategy)


def check_strategy(strategy) -> tf.distribute.Strategy:
    """``strategy`` if it is one of :data:`STRATEGIES`, else a ``TypeError``."""
    if not isinstance(strategy, STRATEGIES):
        raise TypeError(
            "strategy must be a tf.distribute.MirroredStrategy or "
            f"tf.distribute.MultiWorkerMirroredStrategy (or None for one device), got {strategy!r}"
        )
    return strategy


def _name(strategy: tf.distribute.Strategy) -> str:
    """The strategy's public name (``MultiWorkerMirroredStrategy``'s class is named otherwise)."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "MultiWorkerMirroredStrategy"
    return type(strategy).__name__


def _first(strategy: tf.distribute.Strategy, value):
    """The first local replica's component of ``value`` (all replicas hold the same)."""
    return strategy.experimental_local_results(value)[0]


def _call(fn):
    return fn()


class CrossReplicaSync:
    """How the replicas of one :func:`~pinnlib.training.step.balanced_step` agree.

    Both methods are called on a replica; each leaves the replicas through ``merge_call``,
    does its work once, and hands every replica the same result.
    """

    def cond(self, pred: tf.Tensor, true_fn: Callable, false_fn: Callable) -> tf.Tensor:
        """``tf.cond(pred, true_fn, false_fn)`` whose branches may synchronise the replicas.

        ``pred`` must be the same on every replica (it is computed from all-reduced losses);
        the branch is chosen across replicas and then run on each replica.
        """

        def decide(strategy, pred, true_fn, false_fn):
            def on_each(branch):
                out = strategy.extended.call_for_each_replica(_call, args=(branch,))
                return _first(strategy, out)

            return tf.cond(
                _first(strategy, pred), lambda: on_each(true_fn), lambda: on_each(false_fn)
            )

        context = tf.distribute.get_replica_context()
        return context.merge_call(decide, args=(pred, true_fn, false_fn))

    def weights(self, update: Callable, losses: tf.Tensor, per_term) -> tf.Tensor:
        """``update(losses, per_term)``, run once across replicas, with per-term gradients
        summed over the replicas first (each holds its share's, divided by the replicas)."""
        context = tf.distribute.get_replica_context()
        if per_term is not None:
            per_term = context.all_reduce(tf.distribute.ReduceOp.SUM, per_term)

        def once(strategy, losses, per_term):
            grads = None
            if per_term is not None:
                grads = tf.nest.map_structure(lambda g: _first(strategy, g), per_term)
            return update(_first(strategy, losses), grads)

        return context.merge_call(once, args=(losses, per_term))


def _share(points: tf.Tensor, replica, replicas: int) -> tf.Tensor:
    """Replica ``replica``'s rows of ``points``: the ``replica``-th of ``replicas`` equal,
    contiguous blocks (static shape kept)."""
    rows = points.shape[0] // replicas
    return tf.gather(tf.reshape(points, [replicas, rows, *points.shape[1:]]), replica)


def _global_means(local: list[tf.Tensor], replicas: int) -> list[tf.Tensor]:
    """The mean of every term over all replicas; its gradient on this replica is that of this
    replica's term divided by ``replicas`` (the optimizer sums the replicas' gradients)."""
    context = tf.distribute.get_replica_context()
    means = context.all_reduce(tf.distribute.ReduceOp.MEAN, tf.stop_gradient(tf.stack(local)))

    def term(value, mean):
        @tf.custom_gradient
        def spread(x):
            return tf.identity(mean), lambda dy: dy / replicas

        return spread(value)

    return [term(value, means[i]) for i, value in enumerate(local)]


def _variables(obj) -> list[tf.Variable]:
    """The TensorFlow variables behind a Keras model or optimizer, or a balancer (with the
    state of any random generator it holds)."""
    found = list(getattr(obj, "variables", []))  # a wrong type is refused later, by name
    found += [g.state for g in vars(obj).values() if isinstance(g, tf.random.Generator)]
    return [v.value if isinstance(v, keras.Variable) else v for v in found]


def check_created_in_scope(strategy: tf.distribute.Strategy, **objects) -> None:
    """A ``ValueError`` naming the first of ``objects`` (a model, optimizer or balancer; ``None``
    is skipped) whose state was not created inside ``strategy.scope()``."""
    for what, obj in objects.items():
        if obj is not None and not all(
            strategy.extended.variable_created_in_scope(v) for v in _variables(obj)
        ):
            raise ValueError(
                f"the {what} was created outside strategy.scope(): under a tf.distribute "
                "strategy every replica needs its own mirrored copy of the model, optimizer and "
                "balancer state, so create them inside `with strategy.scope():` (the trainer "
                "creates a default optimizer and balancer there itself)"
            )


def _check_shares(run: Run, replicas: int) -> None:
    """Every point set of a step must split evenly over the replicas."""
    points = run.pde.sample(
        run.n_interior, run.n_boundary, tf.random.Generator.from_seed(0), run.dtype
    )
    sizes = {name: int(p.shape[0]) for name, p in points.items()}
    uneven = {name: n for name, n in sizes.items() if n % replicas}
    if uneven:
        raise ValueError(
            f"{type(run.pde).__name__} draws {sizes} points per step (n_interior="
            f"{run.n_interior}, n_boundary={run.n_boundary}); with {replicas} replicas every "
            f"point set must split evenly, so that the mean of the replicas' mean losses is the "
            f"mean over all points, but {uneven} do not: choose point counts divisible by "
            f"{replicas} (for the plate's four separate edges, n_boundary divisible by "
            f"{4 * replicas})"
        )


def _refuse_residual_balancer(balancer) -> None:
    """A balancer that reads per-point residuals (:class:`~pinnlib.NTKWeights`) is refused."""
    if balancer is not None and balancer.needs_residuals:
        raise ValueError(
            f"{type(balancer).__name__} cannot train under a tf.distribute strategy: it takes "
            "per-point Jacobians of the residuals inside its update, which runs once across "
            "replicas (merge_call), where no replica's points and forward pass are at hand; "
            "train it on one device (strategy=None)"
        )


def _refuse_xla(jit_compile) -> None:
    if check_jit_compile(jit_compile):
        raise ValueError(
            "jit_compile=True cannot be used with a tf.distribute strategy: the replicas agree "
            "on the guard and the balancer update through merge_call, which XLA cannot compile "
            "(and on CPU devices XLA cannot compile one function that touches variables on "
            "several devices); pass jit_compile=False"
        )


class MirroredRuns(RunLayout):
    """One run trained data-parallel on the replicas of a ``tf.distribute`` strategy.

    Args:
        run: the run, created inside ``strategy.scope()`` (see :func:`one_run_layout`).
            ``n_interior`` and ``n_boundary`` are the points of the whole step; each replica
            computes on ``1 / replicas`` of them.
        strategy: one of :data:`STRATEGIES`.
        jit_compile: must be ``False`` (see the module's "No XLA").

    Attributes:
        strategy: the strategy; ``replicas``: its number of replicas in sync.
    """

    def __init__(self, run: Run, strategy: tf.distribute.Strategy, jit_compile: bool):
        self.strategy = check_strategy(strategy)
        _refuse_residual_balancer(run.balancer)
        _refuse_xla(jit_compile)
        self.replicas = strategy.num_replicas_in_sync
        if run.balancer.trainable_variables:
            raise NotImplementedError(
                f"{type(run.balancer).__name__} trains variables of its own with the run's "
                "optimizer; under a tf.distribute strategy every replica would add the same "
                "gradient of them (it comes from the all-reduced losses), so the optimizer's sum "
                "over replicas would scale their step by the number of replicas. Train it on "
                "one device (strategy=None)"
            )
        check_created_in_scope(
            strategy, model=run.model, optimizer=run.optimizer, balancer=run.balancer
        )
        _check_shares(run, self.replicas)
        with strategy.scope():  # the halted flag is mirrored like the rest
            super().__init__([run], jit_compile, halted=1)
        self.sync = CrossReplicaSync()
        self.info = {"strategy": _name(strategy), "replicas": self.replicas}

    def step_body(self):
        points = self.runs[0].sample()  # across replicas: the stream one device would draw
        losses, lambdas = self.strategy.run(self._replica_step, args=(points,))
        return _first(self.strategy, losses), _first(self.strategy, lambdas)

    def _replica_step(self, points: dict[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        run = self.runs[0]
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        share = {name: _share(p, replica, self.replicas) for name, p in points.items()}

        def loss_terms():
            local = run.pde.losses(run.model, share, mode=run.derivative_mode)
            return _global_means(list(local), self.replicas)

        return balanced_step(
            loss_terms,
            run.model.trainable_variables,
            [run.balancer],
            run.optimizer,
            self.halted[0],
            run.step,
            names=run.pde.term_names,
            sync=self.sync,
        )

    def checkpoint(self) -> tf.train.Checkpoint:
        return self.runs[0].checkpoint()  # the objects of a one-device run: portable


def one_run_layout(
    make_run: Callable[[], Run],
    jit_compile: bool | str,
    strategy: tf.distribute.Strategy | None,
    given: dict | None = None,
) -> RunLayout:
    """The layout of one run: :class:`~pinnlib.training.runs.SeparateRuns` on one device, or
    :class:`MirroredRuns` under ``strategy``, whose scope ``make_run`` is called in (so that
    the state the run creates itself is mirrored). ``given``: the caller's model, optimizer
    and balancer by name, checked before anything is built from them. ``jit_compile="auto"``
    is ``True`` on one device and ``False`` under a strategy."""
    if jit_compile == "auto":  # XLA on one device; not under a strategy (see "No XLA")
        jit_compile = strategy is None
    if strategy is None:
        return SeparateRuns([make_run()], jit_compile)
    check_strategy(strategy)
    _refuse_residual_balancer((given or {}).get("balancer"))
    _refuse_xla(jit_compile)
    check_created_in_scope(strategy, **(given or {}))
    with strategy.scope():
        run = make_run()
    return MirroredRuns(run, strategy, jit_compile)
