"""The study runner: every planned run is written once, with provenance, and resumes exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest

import pinnlib
from pinnlib import study


def tiny_config(steps=20, **overrides) -> dict:
    config = {
        "name": "tiny",
        "network": {"layers": 1, "width": 8, "activation": "tanh"},
        "learning_rate": 1e-3,
        "seeds": [0, 1],
        "checkpoint_every": 5,
        "jit_compile": False,
        "problems": {
            "poisson": {
                "pde": "Poisson1D",
                "steps": steps,
                "n_interior": 16,
                "n_boundary": 2,
                "eval_every": 5,
                "eval_points": 32,
            }
        },
        "methods": {
            "sum": {"balancer": "Sum"},
            "fixed": {"balancer": "Fixed"},
            "relobralo": {"balancer": "ReLoBRaLo", "temperature": 1.0},
        },
        "tuning": {
            "seeds": [100],
            "steps_fraction": 0.5,
            "candidates": {"poisson": [[1, 1], [1, 10]]},
        },
        "budget": "full",
    }
    config.update(overrides)
    return config


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    config = tiny_config()
    study.run_study(config, out)
    return config, out


def test_every_planned_run_is_written_with_provenance(finished):
    config, out = finished
    runs = study.plan(config)
    assert len(runs) == 2 + 2 * 3  # two tuning candidates x one seed, then 2 seeds x 3 methods
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["finished"] == manifest["planned"] == len(runs)
    assert {e["run"] for e in manifest["runs"]} == {r.name for r in runs}
    for entry in manifest["runs"]:
        record = json.loads((out / entry["json"]).read_text())
        history = pinnlib.History.load(out / entry["npz"])
        for key in ("pinnlib", "git_commit", "tensorflow", "device", "date", "seconds"):
            assert key in record, key
        assert record["pinnlib"] == pinnlib.__version__
        assert record["steps"] == record["spec"]["steps"] == len(history.step)
        assert record["final_rel_l2"] == pytest.approx(history.rel_l2[-1])
        assert record["spec_sha256"] == study._sha(record["spec"])
    tuning = [e for e in manifest["runs"] if e["tuning"]]
    assert all(json.loads((out / e["json"]).read_text())["steps"] == 10 for e in tuning)


def test_fixed_uses_the_tuning_choice_made_on_other_seeds(finished):
    config, out = finished
    medians = {}
    for run in study.plan(config):
        if run.tuning:
            record = json.loads((out / f"{run.name}.json").read_text())
            assert run.seed not in config["seeds"]
            medians.setdefault(run.weights, []).append(record["tail_rel_l2"])
    best = min(medians, key=lambda w: np.median(medians[w]))
    fixed = json.loads((out / "poisson/fixed/seed0.json").read_text())
    assert fixed["spec"]["balancer"]["weights"] == list(best)
    history = pinnlib.History.load(out / "poisson/fixed/seed0.npz")
    np.testing.assert_allclose(history.lambdas, np.tile(best, (len(history.step), 1)))


def test_finished_runs_are_not_trained_again(finished, monkeypatch):
    config, out = finished

    def refuse(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(pinnlib, "train", refuse)
    records = study.run_study(config, out)
    assert len(records) == len(study.plan(config))


def test_a_changed_configuration_is_refused_not_mixed(finished):
    config, out = finished
    changed = tiny_config(steps=30)
    with pytest.raises(ValueError, match="another configuration"):
        study.run_one(changed, study.Run("poisson", "sum", 0), out)


def test_an_interrupted_run_resumes_to_the_same_result(tmp_path):
    config = tiny_config(steps=20, methods={"relobralo": {"balancer": "ReLoBRaLo"}}, seeds=[0])
    run = study.Run("poisson", "relobralo", 0)
    whole = study.run_one(config, run, tmp_path / "whole")
    # The first half of the same run, stopped there (its checkpoint is what a killed run leaves).
    spec = study._spec(config, run)
    pde, model, balancer = study._build(spec)
    pinnlib.train(
        model,
        pde,
        balancer,
        steps=10,
        n_interior=16,
        n_boundary=2,
        seed=0,
        eval_every=5,
        eval_points=32,
        progress=False,
        jit_compile=False,
        checkpoint_dir=tmp_path / "resumed" / ".checkpoints" / run.name,
        checkpoint_every=5,
    )
    resumed = study.run_one(config, run, tmp_path / "resumed")
    assert resumed["steps"] == whole["steps"] == 20
    a = pinnlib.History.load(tmp_path / "whole" / f"{run.name}.npz")
    b = pinnlib.History.load(tmp_path / "resumed" / f"{run.name}.npz")
    np.testing.assert_allclose(b.losses, a.losses, rtol=1e-5)
    np.testing.assert_allclose(b.lambdas, a.lambdas, rtol=1e-5)
    np.testing.assert_allclose(b.rel_l2, a.rel_l2, rtol=1e-5)
    assert not (tmp_path / "resumed" / ".checkpoints" / run.name).exists()


def test_shards_split_the_plan_without_overlap():
    config = tiny_config()
    runs = study.plan(config)
    for n in (1, 2, 3):
        parts = [[r for i, r in enumerate(runs) if i % n == k] for k in range(n)]
        assert sorted(r.name for p in parts for r in p) == sorted(r.name for r in runs)


def test_workers_get_a_device_each():
    """--jobs: one GPU per worker (round robin, growing memory where shared), else CPU shares."""
    env = [study._worker_env(k, 3, 2, {"PATH": "/bin"}, 16) for k in range(3)]
    assert [e["CUDA_VISIBLE_DEVICES"] for e in env] == ["0", "1", "0"]
    assert all(e["TF_FORCE_GPU_ALLOW_GROWTH"] == "true" and e["PATH"] == "/bin" for e in env)
    alone = study._worker_env(1, 2, 2, {}, 16)
    assert alone["CUDA_VISIBLE_DEVICES"] == "1" and "TF_FORCE_GPU_ALLOW_GROWTH" not in alone
    cpu = [study._worker_env(k, 3, 0, {}, 8) for k in range(3)]
    assert {e["TF_NUM_INTRAOP_THREADS"] for e in cpu} == {"2"}
    assert all("CUDA_VISIBLE_DEVICES" not in e for e in cpu)


def test_load_returns_history_and_provenance(finished):
    config, out = finished
    results = study.load(out)
    assert set(results) == {
        (p, m, s) for p in ["poisson"] for m in config["methods"] for s in (0, 1)
    }
    history, record = results["poisson", "relobralo", 1]
    assert record["final_rel_l2"] == pytest.approx(history.final_error)


def test_load_config_names_what_is_wrong(tmp_path):
    bad = tiny_config()
    bad["methods"]["x"] = {"balancer": "Softadapt"}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="method 'x' has balancer 'Softadapt'"):
        study.load_config(path)
    with pytest.raises(ValueError, match="budget must be"):
        study.load_config(path, budget="fast")


def test_the_book_configuration_plans_the_whole_grid():
    config = study.load_config()
    runs = [r for r in study.plan(config) if not r.tuning]
    assert len(runs) == len(config["problems"]) * len(config["methods"]) * len(config["seeds"])
    assert len(config["seeds"]) >= 3
    for name, problem in config["problems"].items():
        assert problem["steps"] >= (40_000 if name == "helmholtz" else 20_000)
    tuning_seeds = set(config["tuning"]["seeds"])
    assert not tuning_seeds & set(config["seeds"])
    smoke = study.load_config(budget="smoke")
    assert all(p["steps"] <= 100 for p in smoke["problems"].values())
