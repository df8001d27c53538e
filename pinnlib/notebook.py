"""Small conveniences for the chapters that must also work in plain Jupyter and Colab.

:func:`glue` stores a number for the prose through myst-nb's ``glue`` when the book tooling is
installed and otherwise just shows it, so a chapter runs in Colab with nothing but pinnlib.
"""

from __future__ import annotations

__all__ = ["glue"]


def glue(name: str, value, display: bool = True) -> None:
    """Glue ``value`` under ``name`` for ``{glue:}`name``` roles; degrade to showing it.

    NumPy scalars are turned into Python numbers first, so that format specs such as
    ``{glue:text}`name:.3f``` work (NumPy 2 prints ``np.float64(0.5)`` otherwise).
    """
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        value = value.item()
    try:
        from myst_nb import glue as _glue
    except ImportError:
        if display:
            print(f"{name} = {value}")
        return  # None, so that a glue call ending a cell does not echo the value again
    _glue(name, value, display=display)
