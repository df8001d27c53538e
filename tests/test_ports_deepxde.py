"""The DeepXDE callback (pinnlib.ports.deepxde_balancing) on a tiny Helmholtz set-up.

DeepXDE runs its PyTorch backend here (DDE_BACKEND=pytorch is set before DeepXDE is imported;
nothing else in the suite imports DeepXDE). DeepXDE and PyTorch are part of the
``test`` extra: if either is missing, the import fails this file (it is not skipped).

* Fixed weights through the callback train exactly like DeepXDE's own ``loss_weights``.
* ReLoBRaLo's weights are the golden NumPy rule applied to the loss terms the step saw.
* LRAnnealing's first weight is the rule applied to gradients computed independently.
"""

from __future__ import annotations

import os

# DeepXDE picks its backend when it is first imported (nothing else in the suite imports it).
os.environ["DDE_BACKEND"] = "pytorch"

import deepxde as dde  # noqa: E402
import golden_balancers as golden  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from pinnlib.ports import deepxde_balancing as db  # noqa: E402
from pinnlib.ports import torch_balancing as tb  # noqa: E402

K0 = 2 * np.pi


def pde(x, y):
    dy_xx = dde.grad.hessian(y, x, i=0, j=0)
    dy_yy = dde.grad.hessian(y, x, i=1, j=1)
    f = K0**2 * torch.sin(K0 * x[:, 0:1]) * torch.sin(K0 * x[:, 1:2])
    return -dy_xx - dy_yy - K0**2 * y - f


def make_model(loss_weights=None, optimizer="adam"):
    dde.config.set_random_seed(0)
    geom = dde.geometry.Rectangle([0, 0], [1, 1])
    bc = dde.icbc.DirichletBC(geom, lambda x: 0, lambda _, on_boundary: on_boundary)
    data = dde.data.PDE(geom, pde, bc, num_domain=40, num_boundary=16, num_test=25)
    net = dde.nn.FNN([2, 8, 8, 1], "tanh", "Glorot uniform")
    model = dde.Model(data, net)
    model.compile(optimizer, lr=1e-3, loss_weights=loss_weights)
    return model


def parameters(model):
    return [p.detach().clone() for p in model.net.parameters()]


def test_backend_is_pytorch():
    assert dde.backend.backend_name == "pytorch"


def test_fixed_weights_train_like_deepxde_loss_weights():
    reference = make_model(loss_weights=[1.0, 100.0])
    reference.train(iterations=6, display_every=3, verbose=0)
    model = make_model()
    callback = db.AdaptiveLossWeights(tb.Fixed([1.0, 100.0]))
    model.train(iterations=6, display_every=3, verbose=0, callbacks=[callback])
    for a, b in zip(parameters(model), parameters(reference)):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert len(callback.history) == 6  # one update per step, none for DeepXDE's evaluations
    assert "losses_train" not in vars(model.data)  # the wrapper is gone after training


def test_relobralo_weights_follow_the_rule_on_the_step_losses():
    model = make_model()
    balancer = tb.ReLoBRaLo(2, alpha=0.9, temperature=0.1, rho=0.5, seed=3)
    callback = db.AdaptiveLossWeights(balancer)
    model.train(iterations=8, display_every=4, verbose=0, callbacks=[callback])
    losses = np.array(callback.loss_history, np.float64)
    generator = torch.Generator().manual_seed(3)
    draws = np.array([torch.rand((), generator=generator).item() for _ in range(8)])
    want = golden.relobralo(losses, draws, alpha=0.9, temperature=0.1, rho=0.5, eps=1e-7)
    np.testing.assert_allclose(np.array(callback.history), want, rtol=2e-5, atol=1e-6)
    assert not np.allclose(callback.history[-1], 1.0), "the weights must have moved"
    # DeepXDE's own history keeps the unweighted terms (its evaluations pass through).
    np.testing.assert_allclose(model.losshistory.loss_train[1], losses[4], rtol=1e-6)


def test_lr_annealing_sees_the_step_gradients():
    model = make_model()
    x = torch.as_tensor(model.data.train_x, dtype=torch.float32).requires_grad_()
    terms = model.data.losses_train(None, model.net(x), dde.losses.get("MSE"), x, model)
    grads = [
        [g.numpy() for g in term]
        for term in tb.per_term_gradients(terms, list(model.net.parameters()))
    ]
    want = golden.lr_annealing([grads], residual=0, a=0.1, every=1, form="published")[0]
    callback = db.AdaptiveLossWeights(tb.LRAnnealing(2, update_every=100, weighted=True))
    model.train(iterations=3, display_every=3, verbose=0, callbacks=[callback])
    np.testing.assert_allclose(callback.history[0], want, rtol=1e-5)
    np.testing.assert_array_equal(callback.history[2], callback.history[0])  # not due yet


def test_refusals_name_the_problem():
    with pytest.raises(TypeError, match="torch_balancing"):
        db.AdaptiveLossWeights([1.0, 2.0])
    model = make_model(loss_weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="loss_weights"):
        model.train(iterations=1, verbose=0, callbacks=[db.AdaptiveLossWeights(tb.Sum(2))])
    model = make_model()
    with pytest.raises(ValueError, match="3 loss terms"):
        model.train(iterations=1, verbose=0, callbacks=[db.AdaptiveLossWeights(tb.Sum(3))])
    # A run that raised leaves its wrapper; the next callback replaces it.
    callback = db.AdaptiveLossWeights(tb.Sum(2))
    model.train(iterations=2, display_every=2, verbose=0, callbacks=[callback])
    assert len(callback.history) == 2
