"""The PDE contract shared by every benchmark problem.

A problem says which loss terms it has (``term_names``), how to draw collocation points
inside a compiled training step (:meth:`PDE.sample`), the residual of each term for a model
(:meth:`PDE.residuals`, whose mean squares are :meth:`PDE.losses`), and its exact or reference
solution (:meth:`PDE.exact`) on a dense evaluation grid (:meth:`PDE.grid`). A new problem is
one small subclass; the chapter "Your own PDE" writes one.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from ..derivatives import MultiIndex, derivatives
from ..validation import check_int, check_positive

# check_positive is re-exported for PDE subclasses (the chapter "Your own PDE" uses it).
__all__ = ["PDE", "check_positive"]


#: ``*args`` and ``**kwargs``: not part of a get_config() dictionary.
_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


class PDE:
    """Base class of the benchmark problems.

    Subclasses set ``term_names``, ``lower``/``upper`` (the box domain), ``coordinates`` and
    implement :meth:`sample`, :meth:`residuals` and :meth:`exact`.

    ``supports_stacking`` declares whether :meth:`residuals` also accepts the points of a
    *stack* of ``S`` networks, shape ``(S, N, dims)`` (index coordinates as ``p[..., :1]``, join
    point sets along axis ``-2``); :func:`pinnlib.train_together` then stacks same-size networks
    into one batched network. It is ``False`` on this base class and pinnlib's own problems set
    it to ``True``. It is a declaration, inherited like any class attribute: a subclass whose
    residual code is not written for stacks says ``supports_stacking = False`` in its body.

    A PDE author builds :meth:`sample` and :meth:`residuals` from three public helpers:
    :meth:`uniform_points` (uniform points in a box), :meth:`edge_points` (points on the four
    edges of a 2-D box) and :meth:`network_derivatives` (derivatives of the network on several
    point sets in one pass). The chapter "Your own PDE" uses exactly these.
    """

    term_names: tuple[str, ...] = ()
    coordinates: tuple[str, ...] = ("x", "y")
    lower: tuple[float, ...] = ()
    upper: tuple[float, ...] = ()
    supports_stacking: bool = False

    @property
    def dims(self) -> int:
        return len(self.coordinates)

    @property
    def num_terms(self) -> int:
        return len(self.term_names)

    # -- sampling --------------------------------------------------------------------------
    def sample(
        self,
        n_interior: int,
        n_boundary: int,
        generator: tf.random.Generator | None = None,
        dtype: str = "float32",
    ) -> dict[str, tf.Tensor]:
        """Draw fresh collocation points; safe to call inside ``tf.function``.

        Returns a dict of ``(N, dims)`` tensors, one per point set the residuals use.
        """
        raise NotImplementedError

    def check_sizes(self, n_interior: int, n_boundary: int) -> None:
        """Raise unless both point counts are integers (``n_boundary >= min_boundary``)."""
        check_int("n_interior", n_interior, 1)
        check_int("n_boundary", n_boundary, self.min_boundary)

    min_boundary = 1

    def uniform_points(
        self,
        generator: tf.random.Generator,
        n: int,
        dtype="float32",
        lower: Sequence[float] | None = None,
        upper: Sequence[float] | None = None,
    ) -> tf.Tensor:
        """``n`` points drawn uniformly in the box ``[lower, upper]`` (default: the domain), as
        an ``(n, dims)`` tensor; a face or edge is a box with ``lower == upper`` in one
        coordinate. Safe inside ``tf.function``."""
        lower = self.lower if lower is None else lower
        upper = self.upper if upper is None else upper
        cols = [
            generator.uniform([n, 1], minval=lo, maxval=hi, dtype=dtype)
            for lo, hi in zip(lower, upper)
        ]
        return tf.concat(cols, axis=1)

    def edge_points(
        self, generator: tf.random.Generator, n: int, dtype="float32"
    ) -> dict[str, tf.Tensor]:
        """``n`` points on the four edges of a 2-D box domain, as evenly split as possible, as
        ``{"left", "right", "bottom", "top"}`` tensors of shape ``(n_edge, 2)``."""
        (x0, y0), (x1, y1) = self.lower, self.upper
        counts = [n // 4 + (k < n % 4) for k in range(4)]
        out = {}
        for name, count, fixed in zip(
            ("left", "right", "bottom", "top"), counts, (("x", x0), ("x", x1), ("y", y0), ("y", y1))
        ):
            axis, value = fixed
            if axis == "x":
                free = generator.uniform([count, 1], y0, y1, dtype=dtype)
                out[name] = tf.concat([tf.fill([count, 1], tf.cast(value, dtype)), free], 1)
            else:
                free = generator.uniform([count, 1], x0, x1, dtype=dtype)
                out[name] = tf.concat([free, tf.fill([count, 1], tf.cast(value, dtype))], 1)
        return out

    # -- residuals and losses --------------------------------------------------------------
    def residuals(self, model, points: dict[str, tf.Tensor], mode: str = "auto"):
        """One residual tensor per term name (their mean squares are the loss terms)."""
        raise NotImplementedError

    def losses(self, model, points: dict[str, tf.Tensor], mode: str = "auto") -> list[tf.Tensor]:
        """Mean squared residual of every term, in the order of ``term_names``.

        Scalars; for a stack of networks (points of shape ``(S, N, dims)``), one per network.
        """
        res = self.residuals(model, points, mode=mode)
        return [tf.reduce_mean(tf.square(res[name]), axis=[-2, -1]) for name in self.term_names]

    def network_derivatives(
        self, model, parts: Sequence[tf.Tensor], wanted: Sequence[MultiIndex], mode: str = "auto"
    ) -> list[dict[MultiIndex, tf.Tensor]]:
        """Derivatives of ``model`` on several point sets in one pass through the network.

        Args:
            model: the network (any Keras model or function of the points).
            parts: point sets, each ``(N_k, dims)`` (or ``(S, N_k, dims)`` for a stack).
            wanted: multi-indices, e.g. ``[(2, 0), (0, 1)]`` for ``u_xx`` and ``u_t``; the
                value ``(0, ..., 0)`` is always included. Empty: the value alone.
            mode: ``"auto"``, ``"forward"`` or ``"tape"`` (:mod:`pinnlib.derivatives`).

        Returns:
            One ``{multi-index: tensor}`` dict per point set, in the order of ``parts``.
        """
        self.check_model(model)
        # Points are (N, dims), or (S, N, dims) for a stack of S networks: the point axis is -2.
        sizes = [tf.shape(p)[-2] for p in parts]
        x = parts[0] if len(parts) == 1 else tf.concat(list(parts), axis=-2)
        if not wanted:  # the value alone: a plain forward pass
            return [{(0,) * self.dims: v} for v in tf.split(model(x), sizes, axis=-2)]
        d = derivatives(model, x, wanted, mode=mode)
        split = {k: tf.split(v, sizes, axis=-2) for k, v in d.items()}
        return [{k: v[i] for k, v in split.items()} for i in range(len(parts))]

    def check_model(self, model) -> None:
        """Raise if the model does not map ``(N, dims)`` points to one output."""
        inputs = getattr(model, "inputs", None)
        if inputs:
            if inputs[0].shape[-1] != self.dims:
                raise ValueError(
                    f"{type(self).__name__} has {self.dims} coordinates {self.coordinates}, "
                    f"but the model takes {inputs[0].shape[-1]} inputs"
                )
            if model.outputs[0].shape[-1] != 1:
                raise ValueError(
                    f"{type(self).__name__} needs a model with 1 output, "
                    f"got {model.outputs[0].shape[-1]}"
                )

    # -- solutions -------------------------------------------------------------------------
    def exact(self, points) -> np.ndarray:
        """Exact (or reference) solution at ``points`` of shape ``(N, dims)``, as ``(N, 1)``."""
        raise NotImplementedError

    def check_points(self, points) -> np.ndarray:
        """``points`` as a float64 array of shape ``(N, dims)``, or a ValueError."""
        pts = np.asarray(points, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != self.dims:
            raise ValueError(f"points must have shape (N, {self.dims}), got {pts.shape}")
        return pts

    def grid(self, n: int = 256) -> tuple[np.ndarray, tuple[int, ...]]:
        """A dense ``n``-per-axis grid over the domain: ``(points (n**dims, dims), shape)``."""
        check_int("n", n, 2)
        axes = [np.linspace(lo, hi, n) for lo, hi in zip(self.lower, self.upper)]
        mesh = np.meshgrid(*axes, indexing="ij")
        return np.stack([m.reshape(-1) for m in mesh], axis=1), tuple(m.shape for m in mesh)[0]

    # -- saving ----------------------------------------------------------------------------
    def get_config(self) -> dict:
        """The constructor's arguments, so that ``type(p).from_config(p.get_config())`` builds
        the same problem (what a Keras ``.keras`` file of :class:`pinnlib.PINNModel` stores).

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
            config[name] = getattr(self, name)
        return config

    @classmethod
    def from_config(cls, config: dict) -> PDE:
        """A new problem from :meth:`get_config`'s dictionary."""
        return cls(**config)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
