"""pinnlib.report.tuning_summaries/tuning_table against the stored study's own choice.

The study wrote, per problem, the median tail error of every fixed-weight candidate and the
winner (``choice.json``) when it ran; recomputing both from the stored tuning runs must give
the same numbers, and the table must list every candidate once with the winner in bold.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pinnlib import report, study

OUT = Path(__file__).resolve().parent.parent / "results" / "study"

pytestmark = pytest.mark.skipif(
    not (OUT / "manifest.json").exists(), reason="no stored study results yet"
)


@pytest.fixture(scope="module")
def tuning():
    return study.load(OUT, tuning=True)


def test_recomputed_medians_and_pick_equal_the_studys_choice(tuning):
    summary = report.tuning_summaries(tuning)
    assert summary, "no tuning runs stored"
    for problem, candidates in summary.items():
        choice = json.loads((OUT / problem / "fixed-tuning" / "choice.json").read_text())
        stored = {tuple(json.loads(k)): v for k, v in choice["median_tail_rel_l2"].items()}
        assert set(candidates) == set(stored), problem
        for weights, s in candidates.items():
            assert s.median == pytest.approx(stored[weights], rel=1e-9), (problem, weights)
            assert s.n == len(choice["seeds"])
        assert min(candidates, key=lambda w: candidates[w].median) == tuple(choice["weights"])


def test_the_table_lists_every_candidate_and_bolds_the_pick(tuning):
    text = report.tuning_table(tuning, term_names={"helmholtz": ("L_f", "L_b")})
    rows = [line for line in text.splitlines()[2:]]
    assert len(rows) == sum(len(c) for c in report.tuning_summaries(tuning).values())
    assert sum("**" in row for row in rows) == len(report.tuning_summaries(tuning))
    assert "| helmholtz (10000 steps) | L_f 1, L_b 1000 | **" in text
