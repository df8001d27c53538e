"""The budget switch: full-length runs for the rendered book, tiny ones for the tests.

Every notebook asks :func:`budget` for its step counts and point sets. The environment
variable ``PINNLIB_BUDGET`` chooses: ``full`` (the default, what a reader running a chapter
gets) or ``smoke`` (what ``make test`` sets so nbval runs every notebook in seconds).
"""

from __future__ import annotations

import os

__all__ = ["budget", "budget_name", "ENV_VAR"]

ENV_VAR = "PINNLIB_BUDGET"
_NAMES = ("full", "smoke")


def budget_name() -> str:
    """The active budget, ``"full"`` or ``"smoke"``; a ValueError for anything else."""
    name = os.environ.get(ENV_VAR, "full").strip().lower() or "full"
    if name not in _NAMES:
        raise ValueError(f"{ENV_VAR} must be one of {_NAMES}, got {name!r}")
    return name


def budget(full, smoke=None):
    """``full`` at the full budget, ``smoke`` at the smoke budget.

    Without ``smoke``, an integer shrinks to ``max(1, full // 100)``, so ``budget(10_000)`` is
    100 smoke steps; anything else needs an explicit ``smoke`` value.
    """
    if budget_name() == "full":
        return full
    if smoke is not None:
        return smoke
    if isinstance(full, bool) or not isinstance(full, int):
        raise TypeError("budget() needs an explicit smoke value for non-integers")
    return max(1, full // 100)
