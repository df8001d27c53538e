"""Derivatives of a network's output with respect to its input coordinates.

A PDE residual needs derivatives such as ``u_xx`` or ``w_xxyy``. Two ways to get them:

* **Nested tapes** (:func:`tape_derivatives`): one ``tf.GradientTape`` per derivative order.
  Works for any Keras model, but each order differentiates the whole graph of the previous one,
  so the cost grows quickly with the order.
* **Forward mode** (:func:`forward_derivatives`): for the MLPs built by :func:`pinnlib.mlp`,
  push the value and its derivatives along a few directions through the network layer by
  layer. A ``Dense`` layer is linear, so it maps every derivative with the same matrix; an
  activation ``a = s(z)`` follows Faa di Bruno's formula, e.g. for the second derivative
  ``a'' = s''(z) z'^2 + s'(z) z''``. Directional derivatives along ``e_x``, ``e_y`` give the
  pure derivatives; mixed ``u_xy`` and ``u_xxyy`` come from the diagonals ``(1, 1)`` and
  ``(1, -1)`` by polarisation::

      u_xy   = (D_{+}^2 u - D_{-}^2 u) / 4
      u_xxyy = (D_{+}^4 u + D_{-}^4 u - 2 u_xxxx - 2 u_yyyy) / 12

:func:`derivatives` picks forward mode when the model and the requested derivatives allow it.

When a PDE needs only the *sum* of the pure second derivatives, :func:`laplacian` carries that
sum instead of each second derivative ("forward Laplacian", Li et al. 2024): the value, the
``d`` first derivatives and one Laplacian go through each layer, ``d + 2`` blocks instead of
``2d + 1``, because for ``a = s(z)``::

    lap(a) = s'(z) lap(z) + s''(z) |grad z|^2

Derivatives are named by multi-indices: ``(2, 0)`` is ``d^2/dx^2``, ``(2, 2)`` is
``d^4/dx^2 dy^2``. The chapter "Derivatives for PINNs" compares both paths (Griewank & Walther
2008 cover the theory).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import keras
import tensorflow as tf

from .constraints import HardBC
from .nn import Affine, activation_name, model_dtype
from .stacked import StackedDense
from .validation import check_choice

__all__ = [
    "derivatives",
    "tape_derivatives",
    "forward_derivatives",
    "forward_supported",
    "laplacian",
    "bilaplacian",
    "BiLaplacian",
]

MultiIndex = tuple[int, ...]
MODES = ("auto", "forward", "tape")


def _check_points(model: keras.Model, x: tf.Tensor) -> tf.Tensor:
    x = tf.convert_to_tensor(x)
    stack = getattr(model, "stack_size", None)
    if stack is None and x.shape.rank != 2:
        raise ValueError(f"points must have shape (N, d), got {x.shape}")
    if stack is not None and (x.shape.rank != 3 or x.shape[0] != stack):
        raise ValueError(f"points for a stack of {stack} networks must be (S, N, d), got {x.shape}")
    inputs = model.inputs[0].shape[-1] if getattr(model, "inputs", None) else None
    if inputs is not None and x.shape[-1] != inputs:
        raise ValueError(f"points have {x.shape[-1]} columns but the model takes {inputs}")
    dtype = tf.as_dtype(model_dtype(model)) if hasattr(model, "compute_dtype") else x.dtype
    if x.dtype != dtype:
        raise TypeError(f"points are {x.dtype.name} but the model computes in {dtype.name}")
    return x


def _normalise(wanted: Iterable[MultiIndex], dims: int) -> list[MultiIndex]:
    out = []
    for alpha in wanted:
        alpha = tuple(int(a) for a in alpha)
        if len(alpha) != dims or any(a < 0 for a in alpha):
            raise ValueError(f"multi-index {alpha} does not fit {dims} input coordinates")
        out.append(alpha)
    return out


# -- nested tapes ----------------------------------------------------------------------------
def tape_derivatives(model, x, wanted: Iterable[MultiIndex]) -> dict[MultiIndex, tf.Tensor]:
    """Derivatives by nested ``tf.GradientTape``\\ s: general, works for any pointwise model.

    Args:
        model: a Keras model mapping ``(N, d)`` points to ``(N, outputs)``; row ``n`` of the
            output must depend only on row ``n`` of the input (true for every MLP).
        x: points, shape ``(N, d)``.
        wanted: multi-indices to compute.

    Returns:
        ``{multi_index: tensor of shape (N, outputs)}``, always including the value.
    """
    if getattr(model, "stack_size", None) is not None:
        raise ValueError("a stack of networks supports forward mode only, not nested tapes")
    x = _check_points(model, x)
    dims = x.shape[-1]
    wanted = _normalise(wanted, dims)
    zero = (0,) * dims
    # Every multi-index is reached from the value by raising one axis at a time.
    needed = {zero}
    for alpha in wanted:
        a = list(alpha)
        while sum(a) > 0:
            needed.add(tuple(a))
            axis = max(i for i, v in enumerate(a) if v > 0)
            a[axis] -= 1
    order = max(sum(a) for a in needed)
    cols = [x[:, i : i + 1] for i in range(dims)]
    tapes = [tf.GradientTape(persistent=True) for _ in range(order)]
    entered = []
    try:
        for tape in tapes:
            tape.__enter__()
            entered.append(tape)
            tape.watch(cols)
        value = model(tf.concat(cols, axis=1))
        # Slice per output while every tape still records, so the slices are differentiable.
        cache = {zero: [value[:, k : k + 1] for k in range(value.shape[-1])]}
        for level in range(1, order + 1):
            tape = entered.pop()  # the innermost tape still recording
            tape.__exit__(None, None, None)
            for alpha in sorted(a for a in needed if sum(a) == level):
                axis = max(i for i, v in enumerate(alpha) if v > 0)
                parent = list(alpha)
                parent[axis] -= 1
                cache[alpha] = [
                    tape.gradient(f, cols[axis], unconnected_gradients=tf.UnconnectedGradients.ZERO)
                    for f in cache[tuple(parent)]
                ]
    finally:
        while entered:
            entered.pop().__exit__(None, None, None)
    return {
        a: cache[a][0] if len(cache[a]) == 1 else tf.concat(cache[a], axis=1)
        for a in [zero, *wanted]
    }


# -- forward mode ----------------------------------------------------------------------------
def _activation_name(layer) -> str | None:
    """The layer's activation by identity in :data:`pinnlib.nn.ACTIVATIONS` (None: unknown)."""
    return activation_name(getattr(layer, "activation", None))


def _plan(dims: int, wanted: list[MultiIndex]):
    """Directions (vector, order) that give every wanted index, or None if unsupported."""
    pure = [0] * dims
    diag = 0
    for alpha in wanted:
        nonzero = [i for i, v in enumerate(alpha) if v > 0]
        if len(nonzero) <= 1:
            if nonzero:
                pure[nonzero[0]] = max(pure[nonzero[0]], alpha[nonzero[0]])
        elif dims == 2 and alpha == (1, 1):
            diag = max(diag, 2)
        elif dims == 2 and alpha == (2, 2):
            diag = 4
            pure = [max(p, 4) for p in pure]
        else:
            return None
    if max(pure + [diag]) > 4:
        return None
    directions = []
    for i, p in enumerate(pure):
        if p:
            directions.append((tuple(1.0 if j == i else 0.0 for j in range(dims)), p))
    if diag:
        directions += [((1.0, 1.0), diag), ((1.0, -1.0), diag)]
    return directions


def forward_supported(model, wanted: Iterable[MultiIndex], dims: int | None = None) -> bool:
    """Whether :func:`forward_derivatives` can handle this model and these multi-indices."""
    layers = getattr(model, "layers", None)
    stacked = getattr(model, "stack_size", None) is not None
    if not (isinstance(model, keras.Sequential) or stacked) or not layers:
        return False
    for layer in layers:
        if isinstance(layer, Affine):
            continue
        dense = isinstance(layer, (keras.layers.Dense, StackedDense))
        if not dense or _activation_name(layer) is None:
            return False
    dims = dims or model.inputs[0].shape[-1]
    wanted = list(wanted)
    if any(len(a) != dims for a in wanted):
        return False
    return _plan(dims, [tuple(a) for a in wanted]) is not None


def _activation_derivatives(name: str, z: tf.Tensor, order: int):
    """Value and the first ``order`` derivatives of the activation at ``z``."""
    if name == "tanh":
        t = tf.tanh(z)
        s1 = 1.0 - t * t
        out = [t, s1, -2.0 * t * s1, s1 * (6.0 * t * t - 2.0), 8.0 * t * s1 * (2.0 - 3.0 * t * t)]
    else:  # sin
        s, c = tf.sin(z), tf.cos(z)
        out = [s, c, -s, -c, s]
    return out[: order + 1]


def _chain(s, z):
    """Faa di Bruno up to fourth order: derivatives of s(z(t)) from those of z (None = 0)."""
    z1, z2, z3, z4 = (list(z) + [None] * 4)[:4]
    zero = 0.0

    def m(*terms):
        out = None
        for t in terms:
            if any(f is None for f in t):
                continue
            prod = t[0]
            for f in t[1:]:
                prod = prod * f
            out = prod if out is None else out + prod
        return out if out is not None else zero

    k = len(z)
    res = [
        m(
            (s[1], z1),
        )
    ]
    if k >= 2:
        res.append(m((s[2], z1, z1), (s[1], z2)))
    if k >= 3:
        res.append(m((s[3], z1, z1, z1), (3.0, s[2], z1, z2), (s[1], z3)))
    if k >= 4:
        res.append(
            m(
                (s[4], z1, z1, z1, z1),
                (6.0, s[3], z1, z1, z2),
                (4.0, s[2], z1, z3),
                (3.0, s[2], z2, z2),
                (s[1], z4),
            )
        )
    return [None if isinstance(r, float) else r for r in res]


def forward_derivatives(model, x, wanted: Iterable[MultiIndex]) -> dict[MultiIndex, tf.Tensor]:
    """Derivatives by forward (Taylor-mode) propagation through a :func:`pinnlib.mlp`.

    Supports any pure derivative up to fourth order and, in two dimensions, the mixed
    ``(1, 1)`` and ``(2, 2)``. Raises ``ValueError`` for anything else (use
    :func:`tape_derivatives`).
    """
    x = _check_points(model, x)
    dims = x.shape[-1]
    wanted = _normalise(wanted, dims)
    if not forward_supported(model, wanted, dims):
        raise ValueError(
            f"forward mode supports pinnlib.mlp models (Dense tanh/sin layers) and pure "
            f"derivatives up to order 4 plus (1, 1) and (2, 2) in 2-D; got {wanted}"
        )
    plan = _plan(dims, wanted)
    n = tf.shape(x)[-2]
    h = x
    # derivs[k][j]: (j+1)-th derivative along direction k, None where it is identically zero.
    derivs = []
    for vector, order in plan:
        v = tf.constant([vector], dtype=x.dtype)
        derivs.append([v] + [None] * (order - 1))
    for layer in model.layers:
        if isinstance(layer, Affine):
            scale = tf.convert_to_tensor(layer.scale, x.dtype)
            h = h * scale + tf.convert_to_tensor(layer.offset, x.dtype)
            derivs = [[None if d is None else d * scale for d in ds] for ds in derivs]
            continue
        kernel, bias = layer.kernel, layer.bias
        # One matmul for the value and every full-size derivative; broadcast rows separately.
        full = [d for ds in derivs for d in ds if d is not None and d.shape[-2] != 1]
        small = [d for ds in derivs for d in ds if d is not None and d.shape[-2] == 1]
        big = tf.concat([h, *full], axis=-2) if full else h
        mapped = tf.matmul(big, kernel)
        pieces = tf.split(mapped, [n] * (1 + len(full)), axis=-2) if full else [mapped]
        z = pieces[0] + bias
        small_mapped = tf.matmul(tf.concat(small, -2), kernel) if small else None
        it_full, i_small = iter(pieces[1:]), 0
        new = []
        for ds in derivs:
            row = []
            for d in ds:
                if d is None:
                    row.append(None)
                elif d.shape[-2] == 1:
                    row.append(small_mapped[..., i_small : i_small + 1, :])
                    i_small += 1
                else:
                    row.append(next(it_full))
            new.append(row)
        name = _activation_name(layer)
        if name == "linear":
            h, derivs = z, new
            continue
        top = max(len(ds) for ds in new)
        s = _activation_derivatives(name, z, top)
        h = s[0]
        derivs = [_chain(s, ds) for ds in new]

    def full_size(d):
        return tf.zeros_like(h) if d is None else d + tf.zeros_like(h)

    along = {vector: ds for (vector, _), ds in zip(plan, derivs)}
    zero = (0,) * dims
    result = {zero: h}
    for alpha in wanted:
        if alpha == zero:
            continue
        nonzero = [i for i, v in enumerate(alpha) if v > 0]
        if len(nonzero) == 1:
            i = nonzero[0]
            e = tuple(1.0 if j == i else 0.0 for j in range(dims))
            result[alpha] = full_size(along[e][alpha[i] - 1])
        elif alpha == (1, 1):
            plus, minus = along[(1.0, 1.0)], along[(1.0, -1.0)]
            result[alpha] = (full_size(plus[1]) - full_size(minus[1])) / 4.0
        else:  # (2, 2)
            plus, minus = along[(1.0, 1.0)], along[(1.0, -1.0)]
            xxxx, yyyy = along[(1.0, 0.0)][3], along[(0.0, 1.0)][3]
            result[alpha] = (
                full_size(plus[3])
                + full_size(minus[3])
                - 2.0 * full_size(xxxx)
                - 2.0 * full_size(yyyy)
            ) / 12.0
    return result


def derivatives(model, x, wanted: Iterable[MultiIndex], mode: str = "auto"):
    """Derivatives of ``model(x)``: forward mode where possible (``"auto"``), else tapes.

    Args:
        model: the network.
        x: points, shape ``(N, d)``, in the model's dtype.
        wanted: multi-indices, e.g. ``[(2, 0), (0, 2)]`` for ``u_xx`` and ``u_yy``.
        mode: ``"auto"``, ``"forward"`` or ``"tape"``.

    Returns:
        ``{multi_index: (N, outputs) tensor}``, including the value at ``(0, ..., 0)``.
    """
    check_choice("mode", mode, MODES)
    wanted = list(wanted)
    if mode == "tape" or (mode == "auto" and not forward_supported(model, wanted)):
        return tape_derivatives(model, x, wanted)
    return forward_derivatives(model, x, wanted)


# -- the Laplacian alone ---------------------------------------------------------------------
def _forward_laplacian(model, x, with_gradient: bool = False):
    """Value and Laplacian carried through the layers (value, gradient, Laplacian).

    ``with_gradient``: also return the gradient, as a list of one tensor per coordinate.
    """
    dims = x.shape[-1]
    h = x
    # Gradient blocks start as broadcast rows e_i; the Laplacian starts at zero (None).
    grads = [
        tf.constant([[1.0 if j == i else 0.0 for j in range(dims)]], x.dtype) for i in range(dims)
    ]
    lap = None
    for layer in model.layers:
        if isinstance(layer, Affine):
            scale = tf.convert_to_tensor(layer.scale, x.dtype)
            h = h * scale + tf.convert_to_tensor(layer.offset, x.dtype)
            grads = [g * scale for g in grads]
            lap = None if lap is None else lap * scale
            continue
        kernel, bias = layer.kernel, layer.bias
        if lap is None:  # before the first activation the gradient rows are constants
            z = tf.matmul(h, kernel) + bias
            zg = tf.split(tf.matmul(tf.concat(grads, -2), kernel), dims, axis=-2)
            zl = None
        else:  # one matmul for value, gradient and Laplacian
            mapped = tf.matmul(tf.concat([h, *grads, lap], -2), kernel)
            z, *zg, zl = tf.split(mapped, dims + 2, axis=-2)
            z = z + bias
        if _activation_name(layer) == "linear":
            h, grads, lap = z, zg, zl
            continue
        s = _activation_derivatives(_activation_name(layer), z, 2)
        h = s[0]
        lap = s[2] * tf.add_n([g * g for g in zg])
        if zl is not None:
            lap = lap + s[1] * zl
        grads = [s[1] * g for g in zg]
    if lap is None:  # no activation at all: a linear map has zero Laplacian
        lap = tf.zeros_like(h)
    if with_gradient:
        return h, lap, [g + tf.zeros_like(h) for g in grads]  # broadcast rows to full size
    return h, lap


def _value_gradient_laplacian(function, x):
    """``f``, its gradient (one tensor per coordinate) and Laplacian by two nested tapes.

    For the small pointwise functions of a :class:`~pinnlib.constraints.HardBC` (distance and
    lift), whose derivatives cost next to nothing next to the network's.
    """
    cols = [x[..., i : i + 1] for i in range(x.shape[-1])]
    zero = tf.UnconnectedGradients.ZERO
    with tf.GradientTape(persistent=True) as outer:
        outer.watch(cols)
        with tf.GradientTape(persistent=True) as inner:
            inner.watch(cols)
            value = function(tf.concat(cols, axis=-1))
        grads = [inner.gradient(value, c, unconnected_gradients=zero) for c in cols]
    lap = tf.add_n([outer.gradient(g, c, unconnected_gradients=zero) for g, c in zip(grads, cols)])
    return value, grads, lap


def _hard_bc_laplacian(model: HardBC, x):
    """Value and Laplacian of ``u = g + d N`` by the product rule, ``N`` in forward mode::

    lap(u) = lap(g) + d lap(N) + 2 grad(d) . grad(N) + N lap(d)
    """
    n, lap_n, grad_n = _forward_laplacian(model.network, x, with_gradient=True)
    d, grad_d, lap_d = _value_gradient_laplacian(model.distance, x)
    u = d * n
    lap = d * lap_n + 2.0 * tf.add_n([a * b for a, b in zip(grad_d, grad_n)]) + n * lap_d
    if model.lift is not None:
        g, _, lap_g = _value_gradient_laplacian(model.lift, x)
        u, lap = g + u, lap_g + lap
    return u, lap


def laplacian(model, x, mode: str = "auto") -> tuple[tf.Tensor, tf.Tensor]:
    """Value ``u`` and Laplacian ``u_xx + u_yy + ...`` of ``model(x)``.

    Forward mode (``"auto"`` or ``"forward"`` on a :func:`pinnlib.mlp`) propagates the value,
    the gradient and the Laplacian itself, never the individual second derivatives; ``"tape"``
    (or any other model under ``"auto"``) sums the pure second derivatives from nested tapes.
    The Helmholtz residual uses it; the chapter "Derivatives for PINNs" measures the gain.
    A :class:`~pinnlib.constraints.HardBC` around a :func:`pinnlib.mlp` takes forward mode too:
    its network's value, gradient and Laplacian combine with those of the distance function by
    the product rule.

    Returns:
        ``(u, lap)``, both of shape ``(N, outputs)``.
    """
    check_choice("mode", mode, MODES)
    x = _check_points(model, x)
    dims = x.shape[-1]
    pure = [tuple(2 if j == i else 0 for j in range(dims)) for i in range(dims)]
    if isinstance(model, HardBC) and mode != "tape" and forward_supported(model.network, pure):
        return _hard_bc_laplacian(model, x)
    use_forward = forward_supported(model, pure, dims)
    if mode == "forward" and not use_forward:
        raise ValueError("forward mode supports pinnlib.mlp models (Dense tanh/sin layers) only")
    if mode == "tape" or not use_forward:
        d = tape_derivatives(model, x, pure)
        return d[(0,) * dims], tf.add_n([d[a] for a in pure])
    return _forward_laplacian(model, x)


# -- the bi-Laplacian ------------------------------------------------------------------------
class BiLaplacian(NamedTuple):
    """What :func:`bilaplacian` returns; every tensor has the shape of the model's output.

    Attributes:
        value: ``u``.
        gradient: ``(u_x, u_y, ...)``, one tensor per input coordinate.
        hessian: the second derivatives keyed by multi-index, ``i <= j`` only: ``(2, 0)``,
            ``(1, 1)``, ``(0, 2)`` in 2-D.
        bilaplacian: ``lap(lap(u))``, e.g. ``u_xxxx + 2 u_xxyy + u_yyyy`` in 2-D.
    """

    value: tf.Tensor
    gradient: tuple[tf.Tensor, ...]
    hessian: dict[MultiIndex, tf.Tensor]
    bilaplacian: tf.Tensor


def _second_index(dims: int, i: int, j: int) -> MultiIndex:
    """The multi-index of ``d^2 / dx_i dx_j``."""
    alpha = [0] * dims
    alpha[i] += 1
    alpha[j] += 1
    return tuple(alpha)


def _bilaplacian_layer(s, g, hess, glap, bilap):
    """Derivatives of ``a = s(z)`` from those of ``z`` (``hess is None``: H, grad L, B are 0).

    ``s`` holds s(z) and its first four derivatives; ``g[i]`` is ``d_i z``, ``hess[(i, j)]``
    (``i <= j``) is ``d_i d_j z``, ``glap[k]`` is ``d_k lap(z)`` and ``bilap`` is ``lap(lap(z))``.
    """
    _, s1, s2, s3, s4 = s
    dims = len(g)
    pairs = [(i, j) for i in range(dims) for j in range(i, dims)]
    g2 = tf.add_n([gi * gi for gi in g])  # |g|^2
    if hess is None:  # first activation: z is affine in the input
        new_hess = {p: s2 * g[p[0]] * g[p[1]] for p in pairs}
        new_glap = [(s3 * g2) * gk for gk in g]
        return [s1 * gi for gi in g], new_hess, new_glap, s4 * g2 * g2

    def H(i, j):
        return hess[(min(i, j), max(i, j))]

    lap = tf.add_n([H(i, i) for i in range(dims)])
    hg = [tf.add_n([H(k, i) * g[i] for i in range(dims)]) for k in range(dims)]  # (H g)_k
    g_hg = tf.add_n([gk * hgk for gk, hgk in zip(g, hg)])  # g.H.g
    g_glap = tf.add_n([gk * lk for gk, lk in zip(g, glap)])  # g . grad(L)
    frob = tf.add_n([(1.0 if i == j else 2.0) * hess[(i, j)] ** 2 for i, j in pairs])  # |H|_F^2
    new_hess = {(i, j): s2 * g[i] * g[j] + s1 * hess[(i, j)] for i, j in pairs}
    c = s3 * g2 + s2 * lap
    new_glap = [c * gk + 2.0 * s2 * hgk + s1 * lk for gk, hgk, lk in zip(g, hg, glap)]
    new_bilap = (
        s4 * g2 * g2
        + s3 * (4.0 * g_hg + 2.0 * g2 * lap)
        + s2 * (4.0 * g_glap + 2.0 * frob + lap * lap)
        + s1 * bilap
    )
    return [s1 * gi for gi in g], new_hess, new_glap, new_bilap


def _forward_bilaplacian(model, x) -> BiLaplacian:
    """Value, gradient, Hessian, grad(Laplacian) and bi-Laplacian carried through the layers."""
    dims = x.shape[-1]
    pairs = [(i, j) for i in range(dims) for j in range(i, dims)]
    h = x
    # Gradient blocks start as broadcast rows e_i; the higher blocks are zero (None) until the
    # first activation.
    grads = [
        tf.constant([[1.0 if j == i else 0.0 for j in range(dims)]], x.dtype) for i in range(dims)
    ]
    hess = glap = bilap = None
    for layer in model.layers:
        if isinstance(layer, Affine):
            scale = tf.convert_to_tensor(layer.scale, x.dtype)
            h = h * scale + tf.convert_to_tensor(layer.offset, x.dtype)
            grads = [g * scale for g in grads]
            if hess is not None:
                hess = {p: v * scale for p, v in hess.items()}
                glap = [v * scale for v in glap]
                bilap = bilap * scale
            continue
        kernel, bias = layer.kernel, layer.bias
        if hess is None:  # the gradient rows are still constants
            z = tf.matmul(h, kernel) + bias
            zg = tf.split(tf.matmul(tf.concat(grads, -2), kernel), dims, axis=-2)
            zh = zgl = zb = None
        else:  # one matmul for all 1 + d + d(d+1)/2 + d + 1 blocks
            blocks = [h, *grads, *(hess[p] for p in pairs), *glap, bilap]
            mapped = tf.split(tf.matmul(tf.concat(blocks, -2), kernel), len(blocks), axis=-2)
            z = mapped[0] + bias
            zg = mapped[1 : 1 + dims]
            zh = dict(zip(pairs, mapped[1 + dims : 1 + dims + len(pairs)]))
            zgl = mapped[1 + dims + len(pairs) : -1]
            zb = mapped[-1]
        name = _activation_name(layer)
        if name == "linear":
            h, grads, hess, glap, bilap = z, zg, zh, zgl, zb
            continue
        s = _activation_derivatives(name, z, 4)
        h = s[0]
        grads, hess, glap, bilap = _bilaplacian_layer(s, zg, zh, zgl, zb)

    def full(t):  # broadcast rows and missing (zero) blocks to the output's shape
        return tf.zeros_like(h) if t is None else t + tf.zeros_like(h)

    hessian = {
        _second_index(dims, i, j): full(None if hess is None else hess[(i, j)]) for i, j in pairs
    }
    return BiLaplacian(h, tuple(full(g) for g in grads), hessian, full(bilap))


def bilaplacian(model, x, mode: str = "auto") -> BiLaplacian:
    """Value, gradient, Hessian and bi-Laplacian ``lap(lap(u))`` of ``model(x)``.

    The Kirchhoff plate needs ``u_xxxx + 2 u_xxyy + u_yyyy = lap(lap(u))`` inside and
    ``u_xx``, ``u_yy`` on the edges. Forward mode (``"auto"`` or ``"forward"`` on a
    :func:`pinnlib.mlp`) carries, through each layer, the value, the gradient ``g``, the Hessian
    ``H`` (its ``d(d+1)/2`` entries), ``grad(lap)`` and ``lap(lap)``: 9 blocks in 2-D instead
    of the 17 of four directional fourth-order jets. For ``a = s(z)`` the chain rule gives::

        d_i a          = s' g_i
        d_i d_j a      = s'' g_i g_j + s' H_ij
        d_k lap(a)     = (s''' |g|^2 + s'' L) g_k + 2 s'' (H g)_k + s' d_k L
        lap(lap(a))    = s'''' |g|^4 + s''' (4 g.H.g + 2 |g|^2 L)
                         + s'' (4 g.grad(L) + 2 |H|_F^2 + L^2) + s' lap(L)

    with ``L = lap(z)``; a ``Dense`` layer maps every block with its kernel. ``"tape"`` (or
    any other model under ``"auto"``) sums the pure and mixed fourth derivatives of nested
    tapes. The chapter "Derivatives for PINNs" measures the gain.

    Args:
        model: the network.
        x: points, shape ``(N, d)`` (``(S, N, d)`` for a stack of networks), in its dtype.
        mode: ``"auto"``, ``"forward"`` or ``"tape"``.

    Returns:
        A :class:`BiLaplacian` of ``(N, outputs)`` tensors.
    """
    check_choice("mode", mode, MODES)
    x = _check_points(model, x)
    dims = x.shape[-1]
    use_forward = forward_supported(model, [], dims)
    if mode == "forward" and not use_forward:
        raise ValueError("forward mode supports pinnlib.mlp models (Dense tanh/sin layers) only")
    if mode == "forward" or (mode == "auto" and use_forward):
        return _forward_bilaplacian(model, x)
    pairs = [(i, j) for i in range(dims) for j in range(i, dims)]
    first = [tuple(int(k == i) for k in range(dims)) for i in range(dims)]
    second = [_second_index(dims, i, j) for i, j in pairs]
    fourth = [tuple(2 * v for v in a) for a in second]  # (4, 0), (2, 2), (0, 4) in 2-D
    d = tape_derivatives(model, x, [*first, *second, *fourth])
    # lap(lap(u)) = sum_i u_iiii + 2 sum_{i<j} u_iijj
    bilap = tf.add_n([(1.0 if i == j else 2.0) * d[a] for (i, j), a in zip(pairs, fourth)])
    return BiLaplacian(d[(0,) * dims], tuple(d[a] for a in first), {a: d[a] for a in second}, bilap)
