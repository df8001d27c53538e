"""Hard boundary conditions: a network that satisfies its Dirichlet condition by construction.

A PINN usually *asks* for the boundary condition with a loss term (``L_b``), and that term then
has to be balanced against the residual, which is what most of the book is about. For a
Dirichlet condition ``u = g`` on a boundary there is another way (Lagaris, Likas & Fotiadis
1998; Sukumar & Srivastava 2022): write the solution as

    u(x) = g(x) + d(x) * N(x)

with ``N`` the network, ``g`` any smooth function with the boundary values (a *lift*) and ``d``
a function that is zero on the boundary and positive inside (a *distance function*, exact or
approximate). Whatever the network's weights, ``u = g`` holds on the boundary exactly; the
boundary loss term is zero, and only the residual is left: one term, nothing to balance.

:class:`HardBC` builds that model around any network; :class:`BoxDistance` is the distance
function of a box, zero on every face. The result is an ordinary Keras model, so
:func:`pinnlib.train` trains it unchanged. Its Laplacian takes forward mode through a
:func:`pinnlib.mlp` network (:func:`pinnlib.laplacian`, by the product rule), other derivatives
nested tapes. The chapter "Beyond balancing" compares it with balancing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
import numpy as np

from .nn import model_dtype

__all__ = ["BoxDistance", "HardBC"]


class BoxDistance(keras.layers.Layer):
    """``d(x) = prod_i (x_i - lo_i)(hi_i - x_i) / ((hi_i - lo_i) / 2)^2`` on a box.

    Zero on every face of the box ``[lo, hi]`` (exactly, in floating point, for points whose
    coordinate equals the bound), positive inside, 1 at the centre; a polynomial, so smooth to
    every order. On ``[-1, 1]^2`` it is ``(1 - x^2)(1 - y^2)``.

    It computes in the dtype of the points it is given (float32 or float64), so one instance
    serves networks of either precision.

    Args:
        lower, upper: the box's bounds, one value per coordinate, ``upper > lower``.
    """

    def __init__(self, lower: Sequence[float], upper: Sequence[float], **kwargs):
        kwargs.setdefault("autocast", False)  # keep float64 points in float64
        super().__init__(**kwargs)
        lo = np.asarray(lower, dtype=np.float64).reshape(-1)
        hi = np.asarray(upper, dtype=np.float64).reshape(-1)
        if lo.shape != hi.shape or lo.size == 0:
            raise ValueError(
                f"lower and upper must have one value per coordinate each, got {lo.size} and "
                f"{hi.size}"
            )
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(hi > lo)):
            raise ValueError(f"the box needs finite bounds with upper > lower, got {lo} and {hi}")
        self.lower, self.upper = lo.tolist(), hi.tolist()

    def call(self, inputs):
        dtype = inputs.dtype
        lo = keras.ops.convert_to_tensor(self.lower, dtype=dtype)
        hi = keras.ops.convert_to_tensor(self.upper, dtype=dtype)
        half = keras.ops.convert_to_tensor((np.subtract(self.upper, self.lower) / 2) ** 2, dtype)
        factors = (inputs - lo) * (hi - inputs) / half
        return keras.ops.prod(factors, axis=-1, keepdims=True)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 1)

    def get_config(self):
        return {**super().get_config(), "lower": self.lower, "upper": self.upper}


def _as_layer(name: str, function, dtype: str) -> keras.layers.Layer:
    """A Keras layer as given, or a callable wrapped in a ``Lambda`` layer."""
    if isinstance(function, keras.layers.Layer):
        return function
    if not callable(function):
        raise TypeError(
            f"{name} must be a Keras layer or a callable mapping points (N, d) to (N, 1), "
            f"got {function!r}"
        )
    return keras.layers.Lambda(function, dtype=dtype, name=name)


class HardBC(keras.Model):
    """The model ``u(x) = lift(x) + distance(x) * network(x)``: Dirichlet data built in.

    Whatever the network's weights, ``u = lift`` wherever ``distance`` is zero. For the
    Helmholtz problem on ``[-1, 1]^2``::

        pde = pinnlib.Helmholtz()
        box = pinnlib.BoxDistance(pde.lower, pde.upper)  # (1 - x^2)(1 - y^2)
        model = pinnlib.HardBC(pinnlib.mlp(2, 4, 50, seed=0), box)
        history = pinnlib.train(model, pde, steps=4000)  # L_b stays exactly zero

    A functional Keras model whose trainable weights are the network's, so every pinnlib
    training path accepts it. :func:`pinnlib.laplacian` (the Helmholtz residual) takes it in
    forward mode when the network is a :func:`pinnlib.mlp`, combining the network's value,
    gradient and Laplacian with those of the distance and the lift by the product rule; other
    derivatives go through nested tapes.

    Args:
        network: the trainable network, e.g. :func:`pinnlib.mlp`, mapping ``(N, d)`` points to
            ``(N, outputs)``.
        distance: zero on the Dirichlet boundary and positive inside, ``(N, d) -> (N, 1)``: a
            :class:`BoxDistance`, another Keras layer (in the network's dtype), or a function
            of TensorFlow operations.
        lift: the boundary values ``g`` extended smoothly inside (same forms); ``None`` for
            ``u = 0`` on the boundary.
        name: the model's name.

    Attributes:
        network, distance, lift: as given (``distance`` and ``lift`` as Keras layers).
    """

    def __init__(
        self,
        network: keras.Model,
        distance: keras.layers.Layer | Callable,
        lift: keras.layers.Layer | Callable | None = None,
        name: str = "hard_bc",
    ):
        if not isinstance(network, keras.Model) or not getattr(network, "inputs", None):
            raise TypeError(
                f"network must be a built Keras model with known inputs (e.g. pinnlib.mlp), "
                f"got {network!r}"
            )
        dims = network.inputs[0].shape[-1]
        dtype = model_dtype(network)
        distance = _as_layer("distance", distance, dtype)
        lift = None if lift is None else _as_layer("lift", lift, dtype)
        x = keras.Input((dims,), dtype=dtype, name="points")
        u = distance(x) * network(x)
        if lift is not None:
            u = lift(x) + u
        super().__init__(x, u, name=name)
        self.network, self.distance, self.lift = network, distance, lift
