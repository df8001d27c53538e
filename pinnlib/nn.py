"""The network: a plain multilayer perceptron built with Keras 3.

PINNs in the book use small fully connected networks (the article and Wang et al. use 4 hidden
layers of 50 tanh units). :func:`mlp` builds one as a ``keras.Sequential`` of ``Dense`` layers,
optionally wrapped in two fixed affine maps: one that rescales the inputs to [-1, 1] and one
that scales the output. Both matter in the chapter on units, where the same plate is written
in metres and in millimetres: with the maps, the two networks compute the same function.

Because the structure is this simple, :mod:`pinnlib.derivatives` can propagate derivatives
forward through it layer by layer (much faster than nested tapes); any other Keras model still
works through the nested-tape path. Introduced in the chapter "A PINN from scratch".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
import numpy as np

from .validation import check_choice, check_float, check_int

__all__ = ["mlp", "Affine", "ACTIVATIONS", "activation_name", "sine", "model_dtype"]


@keras.saving.register_keras_serializable(package="pinnlib")
def sine(x):
    """The sine activation ``sin(x)`` (SIREN-style networks; ``mlp(..., activation="sin")``)."""
    return keras.ops.sin(x)


#: The activations :func:`mlp` offers and forward mode knows, by name. A layer's activation is
#: recognised by *identity* with one of these functions (:func:`activation_name`), so a
#: look-alike function of the same name is not mistaken for one; any Keras activation still
#: works through nested tapes.
ACTIVATIONS: dict[str, Callable] = {"tanh": keras.activations.tanh, "sin": sine}


def activation_name(activation) -> str | None:
    """``"linear"``, a name from :data:`ACTIVATIONS`, or ``None`` for any other activation."""
    if activation is None or activation is keras.activations.linear:
        return "linear"
    for name, function in ACTIVATIONS.items():
        if activation is function:
            return name
    return None


@keras.saving.register_keras_serializable(package="pinnlib")
class Affine(keras.layers.Layer):
    """A fixed elementwise map ``x * scale + offset`` (no trainable weights).

    Like ``keras.layers.Rescaling``, but the constants are converted in the layer's own dtype,
    so a float64 network keeps them exact (Rescaling rounds them through float32). Registered
    with Keras (as is :func:`sine`), so ``keras.models.load_model`` reads an :func:`mlp` back
    without ``custom_objects``.
    """

    def __init__(self, scale, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = np.asarray(scale, dtype=np.float64).tolist()
        self.offset = np.asarray(offset, dtype=np.float64).tolist()

    def call(self, inputs):
        scale = keras.ops.convert_to_tensor(self.scale, dtype=self.compute_dtype)
        offset = keras.ops.convert_to_tensor(self.offset, dtype=self.compute_dtype)
        return inputs * scale + offset

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "offset": self.offset}


def mlp(
    inputs: int,
    layers: int,
    width: int,
    activation: str = "tanh",
    outputs: int = 1,
    seed: int | None = None,
    input_range: tuple[Sequence[float], Sequence[float]] | None = None,
    output_scale: float | None = None,
    dtype: str = "float32",
    name: str = "mlp",
    input_standardize: tuple[Sequence[float], Sequence[float]] | None = None,
) -> keras.Sequential:
    """Build a fully connected network ``inputs -> layers x width -> outputs``.

    Args:
        inputs: number of input coordinates (2 for (x, y) or (x, t)).
        layers: number of hidden layers (>= 1).
        width: units per hidden layer (>= 1).
        activation: hidden activation, ``"tanh"`` or ``"sin"`` (the output is linear).
        outputs: number of outputs.
        seed: seed of the Glorot-normal initialisation; ``None`` draws one at random.
        input_range: ``(lower, upper)`` bounds of the domain, one value per input; if given,
            inputs are first mapped affinely to [-1, 1].
        output_scale: if given, the linear output is multiplied by this constant.
        dtype: ``"float32"`` or ``"float64"``.
        input_standardize: ``(mean, std)``, one value per input; if given, inputs are first
            mapped to ``(x - mean) / std``. Wang, Teng & Perdikaris (2021) standardise the
            inputs this way with the mean and standard deviation of 1e5 interior samples (the
            chapter "Comparing the balancers" reproduces their set-up). Not together with
            ``input_range``.

    Returns:
        A built ``keras.Sequential``.
    """
    for label, value in (("inputs", inputs), ("layers", layers), ("width", width)):
        check_int(label, value, 1)
    check_int("outputs", outputs, 1)
    check_choice("activation", activation, tuple(ACTIVATIONS))
    check_choice("dtype", dtype, ("float32", "float64"))
    if seed is None:
        seed = int(np.random.default_rng().integers(2**31 - 1))

    stack: list[keras.layers.Layer] = [keras.Input((inputs,), dtype=dtype)]
    if input_range is not None:
        lower = np.asarray(input_range[0], dtype=np.float64).reshape(-1)
        upper = np.asarray(input_range[1], dtype=np.float64).reshape(-1)
        if lower.shape != (inputs,) or upper.shape != (inputs,) or np.any(upper <= lower):
            raise ValueError(
                f"input_range must be (lower, upper) with {inputs} values each and upper > lower"
            )
        scale = 2.0 / (upper - lower)
        stack.append(Affine(scale, offset=-1.0 - lower * scale, dtype=dtype, name="to_unit"))
    if input_standardize is not None:
        if input_range is not None:
            raise ValueError("give input_range or input_standardize, not both")
        mean = np.asarray(input_standardize[0], dtype=np.float64).reshape(-1)
        std = np.asarray(input_standardize[1], dtype=np.float64).reshape(-1)
        if mean.shape != (inputs,) or std.shape != (inputs,):
            raise ValueError(
                f"input_standardize must be (mean, std) with {inputs} values each, got "
                f"shapes {mean.shape} and {std.shape}"
            )
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std > 0)):
            raise ValueError(f"input_standardize needs finite means and stds > 0, got {std}")
        stack.append(Affine(1.0 / std, offset=-mean / std, dtype=dtype, name="standardize"))
    act = ACTIVATIONS[activation]
    for i in range(layers):
        init = keras.initializers.GlorotNormal(seed=seed + i)
        stack.append(
            keras.layers.Dense(
                width, activation=act, kernel_initializer=init, dtype=dtype, name=f"hidden_{i}"
            )
        )
    init = keras.initializers.GlorotNormal(seed=seed + layers)
    stack.append(keras.layers.Dense(outputs, kernel_initializer=init, dtype=dtype, name="output"))
    if output_scale is not None:
        if check_float("output_scale", output_scale) == 0:
            raise ValueError(f"output_scale must be finite and non-zero, got {output_scale}")
        stack.append(Affine(float(output_scale), dtype=dtype, name="scale_out"))
    return keras.Sequential(stack, name=name)


def model_dtype(model) -> str:
    """The float dtype a model computes in: its input's, else its first real layer's."""
    inputs = getattr(model, "inputs", None)
    if inputs:
        return keras.backend.standardize_dtype(inputs[0].dtype)
    for layer in getattr(model, "layers", None) or []:
        if not isinstance(layer, keras.layers.InputLayer):
            return layer.compute_dtype
    return model.compute_dtype
