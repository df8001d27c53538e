"""pinnlib.report.table on the stored study: the order asked for, the best median in bold.

The bold cell of each column is recomputed here from the stored runs' tail errors with NumPy
(not from pinnlib.report.summaries), so a wrong pick in the table cannot hide behind the same
code that made it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pinnlib import report, stats, study

OUT = Path(__file__).resolve().parent.parent / "results" / "study"

pytestmark = pytest.mark.skipif(
    not (OUT / "manifest.json").exists(), reason="no stored study results yet"
)


@pytest.fixture(scope="module")
def stored():
    return study.load(OUT)


@pytest.fixture(scope="module")
def config():
    return study.load_config(OUT / "config.json")


def _cells(text: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()]


def test_columns_and_rows_follow_the_order_given(stored, config):
    labels = {"helmholtz": "Helmholtz (40k)", "sum": "Sum"}
    rows = _cells(report.table(stored, labels, config["problems"], config["methods"]))
    assert rows[0] == ["method", "Helmholtz (40k)", "Kirchhoff", "Burgers"]
    assert [r[0] for r in rows[2:]] == ["Sum", *list(config["methods"])[1:]]


def test_default_order_is_sorted(stored):
    rows = _cells(report.table(stored))
    problems = sorted({p for p, _, _ in stored})
    assert rows[0][1:] == [p.capitalize() for p in problems]
    assert [r[0] for r in rows[2:]] == sorted({m for _, m, _ in stored})


def test_the_bold_cell_is_the_lowest_median_tail_error(stored, config):
    problems, methods = list(config["problems"]), list(config["methods"])
    rows = _cells(report.table(stored, problems=problems, methods=methods))[2:]
    for j, problem in enumerate(problems, start=1):
        medians = {
            m: np.median(
                [
                    stats.tail_error(h)
                    for (p, mm, _), (h, _) in stored.items()
                    if p == problem and mm == m
                ]
            )
            for m in methods
        }
        best = min(medians, key=medians.get)
        bold = [methods[i] for i, row in enumerate(rows) if row[j].startswith("**")]
        assert bold == [best], problem


def test_a_method_without_runs_shows_not_run(stored):
    rows = _cells(report.table(stored, problems=["helmholtz"], methods=["sum", "no-such"]))
    assert rows[3] == ["no-such", "not run"]
    assert not rows[2][1].startswith("not run")


@pytest.mark.parametrize("key", ["problems", "methods"])
def test_a_single_name_instead_of_a_list_is_a_type_error(stored, key):
    with pytest.raises(TypeError, match=f"{key} must be a list of names"):
        report.table(stored, **{key: "helmholtz"})
