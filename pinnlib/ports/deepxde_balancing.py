"""Adaptive loss weights for DeepXDE: a callback that reweights the loss terms at every step.

DeepXDE (Lu et al. 2021) takes only fixed ``loss_weights`` in ``Model.compile``; its users
have asked for adaptive ones in many issues (#215, #331, #787, #908, #910, #1085, #1340,
#1953). :class:`AdaptiveLossWeights` adds them to a DeepXDE model trained with its **PyTorch
backend**, using any balancer of :mod:`pinnlib.ports.torch_balancing`::

    import os; os.environ["DDE_BACKEND"] = "pytorch"   # before importing deepxde
    import deepxde as dde
    from pinnlib.ports import torch_balancing as tb
    from pinnlib.ports.deepxde_balancing import AdaptiveLossWeights

    model.compile("adam", lr=1e-3)                      # no loss_weights
    weights = AdaptiveLossWeights(tb.ReLoBRaLo(2, seed=0))
    model.train(iterations=5000, callbacks=[weights])
    weights.history                                     # the weights of every step

How, and why this way. DeepXDE's train step computes the loss terms inside a closure and
sums them; no callback hook sees them. A callback that evaluated the terms again in
``on_batch_begin`` and wrote ``model.loss_weights`` would cost a second forward pass (with
PDE derivatives) every step. Instead, at ``on_train_begin`` the callback wraps the data
object's ``losses_train``, the function that the train step calls (an attribute read at
every call in DeepXDE 1.15): the wrapper hands this step's unweighted terms to the balancer
and returns the weighted terms, which DeepXDE sums and differentiates. So the weights come
from the very losses the step minimises, at no extra forward pass, and the per-term
gradients that LRAnnealing, GlobalGradNorm and GradNorm need are reachable
(``torch.autograd.grad`` on the terms, one backward pass each). ``on_train_end`` removes the
wrapper. DeepXDE's own evaluations (the loss history it prints every ``display_every``
steps) run with the network's gradients switched off; the wrapper passes those through
unweighted and unrecorded, so DeepXDE's history shows the raw terms.

Why PyTorch only: with the TensorFlow 2 backend DeepXDE compiles the step with
``tf.function``, which would freeze Python-side weights at tracing time (the weights would
silently never change); with JAX it is a ``jax.jit``-ed pure function of the parameters
alone. The PyTorch backend runs the step eagerly, so the wrapper sees real numbers every step.
L-BFGS (and NNCG) re-evaluate the loss many times per step in a line search, so the weights
could not be held fixed over one step: refused.

If DeepXDE has not been imported yet and ``DDE_BACKEND`` is unset, importing this module sets
``DDE_BACKEND=pytorch``. Shown in the book's appendix "Using these balancers elsewhere".
"""

from __future__ import annotations

import os
import sys

if "deepxde" not in sys.modules:
    os.environ.setdefault("DDE_BACKEND", "pytorch")

import deepxde  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

try:  # the sibling port, as a package module or copied next to this file
    from pinnlib.ports.torch_balancing import Balancer, per_term_gradients
except ImportError:  # pragma: no cover - the copied-alone case
    from torch_balancing import Balancer, per_term_gradients  # type: ignore[no-redef]

__all__ = ["AdaptiveLossWeights"]

_LINE_SEARCH_OPTIMIZERS = ("L-BFGS", "L-BFGS-B", "NNCG")


class AdaptiveLossWeights(deepxde.callbacks.Callback):
    """A DeepXDE callback that weights the loss terms with a PyTorch balancer at every step.

    Args:
        balancer: a :class:`pinnlib.ports.torch_balancing.Balancer` built for as many terms as
            the DeepXDE data object returns (PDE residuals first, then the ICs/BCs in order).

    Attributes:
        history: the weights of every training step, a list of NumPy arrays.
        loss_history: the unweighted loss terms of every training step (what the balancer saw).
    """

    def __init__(self, balancer: Balancer):
        super().__init__()
        if not isinstance(balancer, Balancer):
            raise TypeError(
                "balancer must be a pinnlib.ports.torch_balancing balancer, got "
                f"{type(balancer).__name__}"
            )
        self.balancer = balancer
        self.history: list[np.ndarray] = []
        self.loss_history: list[np.ndarray] = []
        self._data = None
        self._original = None

    @property
    def weights(self) -> np.ndarray:
        """The latest weights."""
        return self.balancer.lambdas.detach().cpu().numpy().copy()

    def on_train_begin(self) -> None:
        backend = deepxde.backend.backend_name
        if backend != "pytorch":
            raise RuntimeError(
                f"AdaptiveLossWeights needs DeepXDE's pytorch backend, this DeepXDE runs "
                f"{backend!r}: set DDE_BACKEND=pytorch before importing deepxde (the TensorFlow "
                "backend compiles the step with tf.function, which would freeze the weights)"
            )
        model = self.model
        if model.loss_weights is not None:
            raise ValueError(
                "AdaptiveLossWeights sets the weights itself: compile the model without "
                f"loss_weights (got {model.loss_weights})"
            )
        if model.opt_name in _LINE_SEARCH_OPTIMIZERS:
            raise ValueError(
                f"AdaptiveLossWeights cannot be used with {model.opt_name}: its line search "
                "evaluates the loss many times per step; train with a first-order optimiser"
            )
        self._install(model)

    def on_train_end(self) -> None:
        self._uninstall()

    def _install(self, model) -> None:
        data = model.data
        left = vars(data).get("losses_train")
        if getattr(left, "_adaptive_loss_weights", False):  # left by a run that raised
            del data.losses_train
        elif left is not None:
            raise RuntimeError(
                "the data object's losses_train is already replaced by something else"
            )
        self._data, self._original = data, data.losses_train
        balancer, original = self.balancer, data.losses_train

        def losses_train(*args, **kwargs):
            terms = original(*args, **kwargs)
            parameters = [p for p in model.net.parameters() if p.requires_grad]
            if not parameters:  # DeepXDE's own evaluation (_test): gradients are off
                return terms
            if len(terms) != balancer.num_terms:
                raise ValueError(
                    f"the balancer was built for {balancer.num_terms} loss terms, the DeepXDE "
                    f"data gives {len(terms)} (PDE residuals first, then the conditions)"
                )
            stacked = torch.stack(list(terms))
            grads = per_term_gradients(terms, parameters) if balancer.needs_gradients else None
            weights = balancer.update(stacked.detach(), grads)
            self.history.append(weights.cpu().numpy())
            self.loss_history.append(stacked.detach().cpu().numpy())
            weights = weights.to(device=stacked.device, dtype=stacked.dtype)
            return [weights[i] * term for i, term in enumerate(terms)]

        losses_train._adaptive_loss_weights = True
        data.losses_train = losses_train

    def _uninstall(self) -> None:
        if self._data is not None and "losses_train" in vars(self._data):
            del self._data.losses_train
        self._data = self._original = None
