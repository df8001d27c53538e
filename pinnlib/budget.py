"""The budget switch: full-length runs for the rendered book, tiny ones for the tests.

Every notebook asks :func:`budget` for its step counts and point sets. The environment
variable ``PINNLIB_BUDGET`` chooses: ``full`` (the default, what a reader running a chapter
gets) or ``smoke`` (what ``make test`` sets so nbval runs every notebook in seconds).
It is book policy, read by the notebooks only: no pinnlib function changes its behaviour with
it (a notebook that wants XLA only at the full budget passes
``jit_compile=pinnlib.budget(True, False)``).

A misspelt name would silently give the full budget (hours instead of seconds), so reading the
budget also warns, once per process and name, about environment variables that look like a
misspelling of ``PINNLIB_BUDGET``: names within two edits of it (insertions, deletions,
substitutions or swaps of neighbouring letters, ignoring case, e.g. ``PINLIB_BUDGET``,
``PINNLIB_BUGDET``, ``pinnlib_budget``) or containing both ``PIN`` and ``BUD`` (e.g.
``PINN_BUDGET``).
"""

from __future__ import annotations

import os
import warnings

__all__ = ["budget", "budget_name", "ENV_VAR"]

ENV_VAR = "PINNLIB_BUDGET"
_NAMES = ("full", "smoke")
_KNOWN = (ENV_VAR, "PINNLIB_QUIET")  # the variables pinnlib reads: never misspellings
_SEEN: set[str] = set()  # names already examined (and warned about) in this process


def _edits(a: str, b: str) -> int:
    """Edit distance counting a swap of neighbouring letters as one edit (optimal alignment)."""
    rows = [list(range(len(b) + 1))]
    for i, ca in enumerate(a, 1):
        row = [i]
        for j, cb in enumerate(b, 1):
            cost = min(rows[-1][j] + 1, row[j - 1] + 1, rows[-1][j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cost = min(cost, rows[-2][j - 2] + 1)
            row.append(cost)
        rows.append(row)
    return rows[-1][-1]


def _looks_misspelt(name: str) -> bool:
    """Whether an environment variable's name looks like a misspelling of ``PINNLIB_BUDGET``."""
    if name in _KNOWN:
        return False
    upper = name.upper()
    return _edits(upper, ENV_VAR) <= 2 or ("PIN" in upper and "BUD" in upper)


def _warn_misspelt() -> None:
    for name in sorted(set(os.environ) - _SEEN):
        _SEEN.add(name)
        if _looks_misspelt(name):
            state = f"{ENV_VAR} is " + (
                f"set to {os.environ[ENV_VAR]!r}" if ENV_VAR in os.environ else "not set"
            )
            warnings.warn(
                f"environment variable {name}={os.environ[name]!r} looks like a misspelling of "
                f"{ENV_VAR}, the name pinnlib reads ({state}); rename it to {ENV_VAR}",
                UserWarning,
                stacklevel=3,
            )


def budget_name() -> str:
    """The active budget, ``"full"`` or ``"smoke"``; a ValueError for anything else.

    Warns (``UserWarning``, once per process and name) about variables whose names look like a
    misspelling of ``PINNLIB_BUDGET``.
    """
    _warn_misspelt()
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
