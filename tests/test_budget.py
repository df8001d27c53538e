"""Misspelt budget variables warn (issue 15); tests/test_train.py covers the budget values.

A misspelt ``PINNLIB_BUDGET`` used to be ignored silently, so ``PINLIB_BUDGET=smoke`` ran every
chapter at the full budget. The rule (pinnlib/budget.py): a name within two edits of
``PINNLIB_BUDGET`` (a swap of neighbouring letters counts as one; case is ignored) or
containing both ``PIN`` and ``BUD`` gets one UserWarning per process, naming both names.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import warnings

import pytest

import pinnlib

budget_module = importlib.import_module("pinnlib.budget")  # pinnlib.budget is the function


@pytest.fixture
def fresh(monkeypatch):
    """Forget the names warned about so far, except those already in the environment: a test
    sees warnings only for the variables it sets itself."""
    monkeypatch.setattr(budget_module, "_SEEN", set(os.environ))
    monkeypatch.delenv("PINNLIB_BUDGET", raising=False)
    return monkeypatch


def read_budget():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        name = pinnlib.budget_name()
    return name, [w for w in caught if issubclass(w.category, UserWarning)]


@pytest.mark.parametrize(
    "name",
    [
        "PINLIB_BUDGET",  # a letter dropped
        "PINNLIB_BUGDET",  # two neighbours swapped
        "PINNLIB_BUDGTE",
        "pinnlib_budget",  # wrong case (Linux environment names are case-sensitive)
        "PINNLIB_BUDGETS",  # a letter added
        "PINNLIB-BUDGET",  # a substitution
        "PINNLB_BUDGT",  # two letters dropped
        "PINN_BUDGET",  # far by edits, but PIN and BUD
        "MY_PINNLIB_BUDGET_LEVEL",
    ],
)
def test_misspelt_name_warns_naming_both(fresh, name):
    fresh.setenv(name, "smoke")
    budget, caught = read_budget()
    assert budget == "full"  # the warning explains; it does not guess the budget
    assert len(caught) == 1
    message = str(caught[0].message)
    assert f"{name}='smoke'" in message and "misspelling of PINNLIB_BUDGET" in message
    assert "PINNLIB_BUDGET is not set" in message
    assert caught[0].filename == __file__  # points at the caller, not at pinnlib


@pytest.mark.parametrize(
    "name",
    [
        "PINNLIB_QUIET",  # pinnlib's other variable
        "BUDGET",
        "PIN_CODE",
        "NUMBA_BUDGET",
        "PXXXLIB_BUDGET",  # three edits away, and no PIN
        "PATH",
    ],
)
def test_other_names_do_not_warn(fresh, name):
    fresh.setenv(name, "smoke")
    fresh.setenv("PINNLIB_BUDGET", "smoke")
    budget, caught = read_budget()
    assert budget == "smoke" and caught == []


def test_edit_distance_boundary(fresh):
    fresh.setenv("PIXXLIB_BUDGET", "1")  # two substitutions: warns
    fresh.setenv("PXXXLIB_BUDGEX", "1")  # four: does not
    _, caught = read_budget()
    assert [str(w.message).split("=")[0] for w in caught] == ["environment variable PIXXLIB_BUDGET"]


def test_warns_once_per_process_and_name(fresh):
    fresh.setenv("PINNLIB_BUDGET", "smoke")
    fresh.setenv("PINLIB_BUDGET", "smoke")
    budget, caught = read_budget()
    assert budget == "smoke" and len(caught) == 1
    assert "PINNLIB_BUDGET is set to 'smoke'" in str(caught[0].message)
    assert read_budget()[1] == []  # the same name again: silent
    assert read_budget()[1] == []
    fresh.setenv("PINNLIB_BUGDET", "full")  # a new misspelling appears later: warned once
    _, caught = read_budget()
    assert len(caught) == 1 and "PINNLIB_BUGDET" in str(caught[0].message)
    assert read_budget()[1] == []


def test_budget_reads_warn_too(fresh):
    fresh.setenv("PINLIB_BUDGET", "smoke")
    with pytest.warns(UserWarning, match="PINLIB_BUDGET='smoke' looks like a misspelling"):
        assert pinnlib.budget(10_000) == 10_000


def test_once_per_process_in_a_fresh_interpreter(tmp_path):
    # A real process with the default warning filters: one warning for three reads. budget.py
    # imports only the standard library, so it is loaded alone (no TensorFlow start-up).
    script = f"""
import importlib.util, json, warnings
spec = importlib.util.spec_from_file_location("budget", {budget_module.__file__!r})
budget = importlib.util.module_from_spec(spec)
spec.loader.exec_module(budget)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    names = [budget.budget_name() for _ in range(3)]
print(json.dumps({{"names": names, "warnings": [str(w.message) for w in caught]}}))
"""
    env = {k: v for k, v in os.environ.items() if not budget_module._looks_misspelt(k)}
    env.pop("PINNLIB_BUDGET", None)
    env["PINLIB_BUDGET"] = "smoke"
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["names"] == ["full"] * 3
    assert len(result["warnings"]) == 1 and "PINLIB_BUDGET" in result["warnings"][0]
