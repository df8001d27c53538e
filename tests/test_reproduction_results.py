"""The stored reproduction of Wang et al.'s Table 3 (results/wang2021) is complete and is what
chapter 12 glues: every run the configuration plans is stored with a clean provenance, and every
``repro_*`` number of the chapter equals the number recomputed here from the stored files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import nbformat
import numpy as np
from notebook_glue import glued as glued_values

from pinnlib import report, stats, study

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "results" / "wang2021"
CHAPTER = ROOT / "book" / "12_comparison.ipynb"


def test_every_planned_run_is_stored_with_its_configuration():
    config = study.load_config(OUT / "config.json")
    manifest = json.loads((OUT / "manifest.json").read_text())
    planned = {r.name for r in study.plan(config)}
    assert {e["run"] for e in manifest["runs"]} == planned
    for run in study.plan(config):
        record = json.loads((OUT / f"{run.name}.json").read_text())
        assert record["spec"] == study._spec(config, run)
        assert record["steps"] == config["problems"][run.problem]["steps"]
        assert record["git_dirty"] is False, run.name


def test_the_chapter_glues_the_reproduction_of_the_stored_files():
    config = json.loads((OUT / "config.json").read_text())
    results = study.load(OUT)
    glued = {k: v for k, v in glued_values(nbformat.read(CHAPTER, as_version=4)).items()
             if k.startswith("repro_")}  # fmt: skip
    expected = {}
    rows = report.reproduction(results, config["published"])
    for r in rows:
        tag = f"{r['problem'].split('-')[1]}_{r['method'].split('-')[0].lower()}"
        for key, value in [("mean", r["mean"]), ("std", r["std"]),
                           ("pub", r["published_mean"]), ("p", r["welch_p"])]:  # fmt: skip
            expected[f"repro_{key}_{tag}"] = value
    expected["repro_inside"] = f"{sum(r['inside'] for r in rows)} of {len(rows)}"
    constant = [h for (p, m, _), (h, _) in results.items() if m == "M2-constant-rate"]
    decayed = [h for (p, m, _), (h, _) in results.items()
               if (p, m) == ("helmholtz-3x50", "M2-annealing")]  # fmt: skip
    expected["repro_constant_mean"] = float(np.mean([h.rel_l2[-1] for h in constant]))
    expected["repro_constant_tail"] = float(np.median([stats.tail_error(h) for h in constant]))
    expected["repro_decayed_tail"] = float(np.median([stats.tail_error(h) for h in decayed]))
    assert len(glued) >= len(expected)
    for name, value in expected.items():
        assert name in glued, f"{name} is not glued by chapter 12"
        text = glued[name]
        if isinstance(value, str):
            assert text.strip("'\"") == value, name
        else:
            assert math.isclose(float(text), value, rel_tol=1e-9), name
