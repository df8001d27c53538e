"""report.reproduction: our final errors beside a published table, with the stated rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from pinnlib import History, report


def _runs(problem, method, finals):
    out = {}
    for seed, final in enumerate(finals):
        h = History(("L_f", "L_b"))
        h.record_evaluation(0, 1.0, 1.0, 0.0)
        h.record_evaluation(10, final, final**2, 1.0)
        out[(problem, method, seed)] = (h, {})
    return out


PUBLISHED = {
    "trials": 10,
    "source": "a paper",
    "p": {"plain": [0.2, 0.04], "annealed": [0.01, 0.002]},
}


def test_mean_std_rule_and_welch_are_recomputed_independently():
    finals = [0.15, 0.11, 0.19, 0.17, 0.14]
    results = {**_runs("p", "plain", finals), **_runs("p", "annealed", [0.05, 0.06])}
    rows = {r["method"]: r for r in report.reproduction(results, PUBLISHED)}
    plain = rows["plain"]
    assert plain["seeds"] == 5 and plain["trials"] == 10
    assert plain["mean"] == pytest.approx(np.mean(finals))
    assert plain["std"] == pytest.approx(np.std(finals, ddof=1))
    assert plain["inside"] == (abs(np.mean(finals) - 0.2) <= 0.08)
    # Welch's t by its formula, p from the t distribution with Welch-Satterthwaite dof.
    v1, v2 = np.var(finals, ddof=1) / 5, 0.04**2 / 10
    t = (np.mean(finals) - 0.2) / math.sqrt(v1 + v2)
    dof = (v1 + v2) ** 2 / (v1**2 / 4 + v2**2 / 9)
    assert plain["welch_p"] == pytest.approx(2 * scipy_stats.t.sf(abs(t), dof), rel=1e-9)
    # 0.055 is far outside 0.01 +- 0.004.
    assert rows["annealed"]["inside"] is False


def test_a_published_cell_without_runs_is_not_run_and_not_inside():
    rows = report.reproduction({}, PUBLISHED)
    assert all(r["seeds"] == 0 and not r["inside"] for r in rows)
    assert "not run" in report.reproduction_table(rows)
