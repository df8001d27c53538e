"""The stored long-budget study (results/study) is complete, consistent and what the book says.

Every run in the manifest must exist with its provenance, have the configured number of steps
and the configured specification; the comparison chapter must have been executed with the
pinnlib version that produced the results it shows, and every ``study_*`` number it glues must
equal the number recomputed here from the stored files.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import nbformat
import pytest
from notebook_glue import glued as glued_values

import pinnlib
from pinnlib import report, study

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "results" / "study"
# Every page of the book that is a notebook: those that glue study_* numbers are checked, the
# others skip (a new chapter that shows the study is covered without being listed here).
CHAPTERS = sorted((ROOT / "book").glob("*.ipynb"))

pytestmark = pytest.mark.skipif(
    not (OUT / "manifest.json").exists(), reason="no stored study results yet"
)


@pytest.fixture(scope="module")
def manifest():
    return json.loads((OUT / "manifest.json").read_text())


@pytest.fixture(scope="module")
def config():
    return study.load_config()


def test_every_listed_run_exists_with_the_configured_spec(manifest, config):
    assert manifest["runs"], "the manifest lists no runs"
    planned = {r.name: r for r in study.plan(config)}
    for entry in manifest["runs"]:
        assert entry["run"] in planned, f"{entry['run']} is not in the configured grid"
        run = planned[entry["run"]]
        record = json.loads((OUT / entry["json"]).read_text())
        assert (OUT / entry["npz"]).exists(), entry["npz"]
        weights = None
        if run.method == "fixed" and not run.tuning:
            choice = json.loads((OUT / run.problem / "fixed-tuning" / "choice.json").read_text())
            weights = choice["weights"]
        spec = study._spec(config, run, weights)
        assert record["spec"] == spec, f"{run.name} was made with another configuration"
        assert record["spec_sha256"] == study._sha(spec)
        assert record["steps"] == spec["steps"], run.name
        history = pinnlib.History.load(OUT / entry["npz"])
        assert history.eval_step[-1] == spec["steps"], run.name
        assert record["final_rel_l2"] == pytest.approx(history.rel_l2[-1]), run.name
        for key in ("pinnlib", "git_commit", "tensorflow", "device", "date", "seconds"):
            assert record.get(key), f"{run.name}: provenance lacks {key}"


def test_the_manifest_lists_every_finished_run_on_disk(manifest):
    listed = {e["json"] for e in manifest["runs"]}
    on_disk = {str(p.relative_to(OUT)) for p in OUT.glob("*/*/*.json") if p.name != "choice.json"}
    assert on_disk == listed


def test_fixed_weights_were_chosen_on_seeds_outside_the_study(config):
    for problem in config["problems"]:
        path = OUT / problem / "fixed-tuning" / "choice.json"
        if not path.exists():
            continue
        choice = json.loads(path.read_text())
        assert not set(choice["seeds"]) & set(config["seeds"])
        medians = {tuple(json.loads(k)): v for k, v in choice["median_tail_rel_l2"].items()}
        assert tuple(choice["weights"]) == min(medians, key=medians.get)


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_the_chapter_glues_the_numbers_of_the_stored_files(chapter):
    notebook = nbformat.read(chapter, as_version=4)
    glued = {k: v for k, v in glued_values(notebook).items() if k.startswith("study_")}
    if not glued:
        pytest.skip(f"{chapter.name} does not show the study yet")
    results = study.load(OUT)
    versions = {record["pinnlib"] for _, record in results.values()}
    assert versions == {notebook.metadata["pinnlib"]["version"]}, (
        "the chapter was executed with another pinnlib version than the results it shows"
    )
    expected = report.numbers(results)
    for name, text in glued.items():
        assert name in expected, f"{name} is glued but not computed from the study"
        value = expected[name]
        if isinstance(value, str):
            assert text.strip("'\"") == value, name
        else:
            got = float(text)
            assert math.isclose(got, value, rel_tol=1e-9) or (
                math.isnan(got) and math.isnan(value)
            ), name
