"""A stack of networks of one configuration, evaluated as one batched network.

``S`` networks built by :func:`pinnlib.mlp` with the same sizes (different seeds, say) do the
same arithmetic on different numbers. Stacking each layer's kernels into one ``(S, in, out)``
tensor turns ``S`` small matrix products into one batched product, which keeps a processor
busier than ``S`` products one after another. Points get a leading axis too: ``(S, N, d)``,
network ``s`` seeing ``points[s]``. :mod:`pinnlib.derivatives` propagates forward-mode
derivatives through a stack exactly as through one network (the batch axis rides along), and
the PDE residuals are written with ``[..., :1]``-style indexing so that they accept it.

:func:`pinnlib.train_together` builds a stack from its models, trains it and writes the
weights back; the chapter "Derivatives for PINNs" measures what stacking gains.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from .nn import Affine, model_dtype

__all__ = ["StackedMLP", "StackedDense", "stackable"]


class StackedDense:
    """One Dense layer of every network in a stack: ``kernel (S, in, out)``, ``bias (S, 1, out)``."""

    def __init__(self, layers: Sequence[keras.layers.Dense], index: int):
        self.activation = layers[0].activation
        self.kernel = tf.Variable(
            tf.stack([layer.kernel.value for layer in layers]), name=f"stacked_kernel_{index}"
        )
        self.bias = tf.Variable(
            tf.stack([layer.bias.value[None, :] for layer in layers]), name=f"stacked_bias_{index}"
        )


def _signature(model) -> list | None:
    """What two models must share to be stacked, or None if the model cannot be stacked."""
    if not isinstance(model, keras.Sequential) or not model.built:  # unbuilt: check_run says so
        return None
    out = []
    for layer in model.layers:
        if isinstance(layer, Affine):
            out.append(("affine", tuple(np.ravel(layer.scale)), tuple(np.ravel(layer.offset))))
        elif isinstance(layer, keras.layers.Dense) and layer.use_bias:
            out.append(("dense", tuple(layer.kernel.shape), layer.activation))
        else:
            return None
    return [model_dtype(model), *out]


def stackable(models: Sequence[keras.Model]) -> bool:
    """Whether ``models`` are :func:`pinnlib.mlp` networks of one configuration."""
    signatures = [_signature(m) for m in models]
    return (
        bool(models) and signatures[0] is not None and all(s == signatures[0] for s in signatures)
    )


class StackedMLP:
    """``len(models)`` networks of one :func:`pinnlib.mlp` configuration as one batched network.

    The stack copies the models' weights at construction; :meth:`write_back` copies the
    trained weights back into them. ``trainable_variables`` are ordered like one model's
    (kernel, bias per layer), each with the stack axis in front.
    """

    def __init__(self, models: Sequence[keras.Model]):
        models = list(models)
        if not stackable(models):
            raise ValueError(
                "only pinnlib.mlp networks of one configuration (sizes, activation, input and "
                "output maps, dtype) can be stacked"
            )
        self.members = models
        self.stack_size = len(models)
        template = models[0]
        # The template's symbolic inputs/outputs let shape and dtype checks treat the stack
        # like one of its networks.
        self.inputs, self.outputs = template.inputs, template.outputs
        self.compute_dtype = model_dtype(template)
        self.layers = []
        for i, layer in enumerate(template.layers):
            if isinstance(layer, Affine):
                self.layers.append(layer)  # fixed constants, equal in every member
            else:
                self.layers.append(StackedDense([m.layers[i] for m in models], i))

    @property
    def trainable_variables(self) -> list[tf.Variable]:
        return [
            v
            for layer in self.layers
            if isinstance(layer, StackedDense)
            for v in (layer.kernel, layer.bias)
        ]

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        """Values for points of shape ``(S, N, d)``: network ``s`` at ``x[s]``."""
        h = x
        for layer in self.layers:
            if isinstance(layer, Affine):
                h = h * tf.constant(layer.scale, h.dtype) + tf.constant(layer.offset, h.dtype)
            else:
                h = layer.activation(tf.matmul(h, layer.kernel) + layer.bias)
        return h

    def write_back(self) -> None:
        """Copy the stack's weights into its member models."""
        for s, model in enumerate(self.members):
            dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
            stacked = [layer for layer in self.layers if isinstance(layer, StackedDense)]
            for layer, st in zip(dense, stacked):
                layer.kernel.assign(st.kernel[s])
                layer.bias.assign(st.bias[s, 0])

    def __repr__(self) -> str:
        return f"StackedMLP({self.stack_size} x {self.members[0].name})"
