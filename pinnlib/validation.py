"""Argument checks: one wording and one pair of exception types for all of pinnlib.

A wrong *type* raises ``TypeError``, a wrong *value* ``ValueError``; either message names the
argument, says what is allowed and shows what was given, for example::

    steps must be an integer >= 0, got 10000.0 (a float); use an integer, e.g. 10_000
    learning_rate must be a finite number > 0, got nan

A float where an integer is needed raises :class:`IntegerTypeError`, a ``TypeError`` that is
also a ``ValueError``: pinnlib raised ``ValueError`` there before 0.3, and code that catches
that keeps working. ``pinnlib/balancing.py`` keeps its own small copy of these checks so that
it stays copyable alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "IntegerTypeError",
    "check_bool",
    "check_choice",
    "check_float",
    "check_instance",
    "check_int",
    "check_learning_rate",
    "check_positive",
]


class IntegerTypeError(TypeError, ValueError):
    """An integer argument given as another type (a ``TypeError``, and a ``ValueError`` too)."""


def _bounds(low, high, low_open: bool = False, high_open: bool = False) -> str:
    """``" >= 1"``, ``" > 0"`` or ``" in [2, 300]"``: the allowed range in words."""
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f" {'>' if low_open else '>='} {low}"
    if high is not None:
        return f" {'<' if high_open else '<='} {high}"
    return ""


def check_int(name: str, value, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an ``int`` in ``[low, high]`` (either bound may be ``None``).

    ``True``/``False`` are refused (they are ints to Python, never a count to a reader); an
    integral float such as ``1e4`` gets a hint to write ``10_000``.
    """
    allowed = f"{name} must be an integer{_bounds(low, high)}"
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        hint = ""
        if isinstance(value, (float, np.floating)) and math.isfinite(value):
            hint = " (a float); use an integer, e.g. "
            hint += f"{int(value):_}" if float(value).is_integer() else f"{math.floor(value):_}"
        raise IntegerTypeError(f"{allowed}, got {value!r}{hint}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{allowed}, got {value}")
    return int(value)


def check_float(
    name: str,
    value,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``float(value)``: finite and inside the range (``low_open``: ``> low`` instead of ``>=``)."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {value!r}") from None
    below = low is not None and (number <= low if low_open else number < low)
    above = high is not None and (number >= high if high_open else number > high)
    if not math.isfinite(number) or below or above:
        allowed = _bounds(low, high, low_open, high_open)
        raise ValueError(f"{name} must be a finite number{allowed}, got {number}")
    return number


def check_positive(name: str, value) -> float:
    """``float(value)``, finite and ``> 0``."""
    return check_float(name, value, 0, low_open=True)


def check_learning_rate(name: str, value):
    """A learning rate: a finite number ``> 0`` (returned as ``float``) or a Keras
    ``LearningRateSchedule`` (returned as given), such as Wang et al.'s exponential decay
    ``keras.optimizers.schedules.ExponentialDecay(1e-3, 1000, 0.9)``."""
    import keras  # here, not at the top: the other checks need NumPy alone

    if isinstance(value, keras.optimizers.schedules.LearningRateSchedule):
        return value
    try:
        return check_positive(name, value)
    except TypeError:
        raise TypeError(
            f"{name} must be a number or a keras.optimizers.schedules.LearningRateSchedule, "
            f"got {value!r}"
        ) from None


def check_bool(name: str, value) -> bool:
    """``value`` if it is ``True`` or ``False`` (NumPy booleans too)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_choice(name: str, value, choices: Sequence):
    """``value`` if it is one of ``choices``."""
    if not any(isinstance(value, type(c)) and value == c for c in choices):
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def check_instance(name: str, value, kind: type | tuple[type, ...], what: str):
    """``value`` if it is an instance of ``kind``; ``what`` names the kind for the message."""
    if not isinstance(value, kind):
        raise TypeError(f"{name} must be {what}, got {type(value).__name__}")
    return value
