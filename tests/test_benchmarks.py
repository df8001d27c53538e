"""The benchmark scripts run and refuse bad input (their numbers are not tested: speed is
measured by ``make bench``, not asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )


def test_the_ceiling_case_trains_and_reports_a_rate():
    proc = _run("cases.py", "floor", "helmholtz", "--steps", "3", "--warmup", "1")
    assert proc.returncode == 0, proc.stderr
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")][-1]
    out = json.loads(line)
    assert out["result"] > 0 and out["peak_mb"] > 0


def test_eval_cost_reports_both_measures():
    proc = _run("eval_cost.py", "--problems", "helmholtz", "--steps", "60", "--rounds", "1")
    assert proc.returncode == 0, proc.stderr
    (line,) = [ln for ln in proc.stdout.splitlines() if ln.startswith("helmholtz:")]
    assert "60 steps" in line and "every 3 steps" in line and "19 of them" in line


@pytest.mark.parametrize(
    "args, words",
    [
        (["--problems", "helmholz"], "invalid choice: 'helmholz'"),
        (["--steps", "10"], "--steps must be at least 60"),
        (["--rounds", "0"], "--rounds must be at least 1"),
    ],
)
def test_eval_cost_refuses_bad_input_by_name(args, words):
    proc = _run("eval_cost.py", *args)
    assert proc.returncode == 2
    assert words in proc.stderr


def test_point_scaling_times_every_point_count():
    proc = _run(
        "point_scaling.py",
        *("--problems", "helmholtz", "--points", "8", "16", "--steps", "1", "--rounds", "1"),
    )
    assert proc.returncode == 0, proc.stderr
    rows = [ln for ln in proc.stdout.splitlines() if ln.strip().startswith("n =")]
    assert [r.split(":")[0].split()[-1] for r in rows] == ["8", "16"]
    assert all("ms per step" in r for r in rows)


def test_point_scaling_refuses_too_few_points_by_name():
    proc = _run("point_scaling.py", "--points", "4", "512")
    assert proc.returncode == 2
    assert "--points must all be at least 8" in proc.stderr


def test_balancer_cost_covers_every_balancer_and_runs():
    sys.path.insert(0, str(BENCH))
    try:
        import balancer_cost
    finally:
        sys.path.remove(str(BENCH))
    import pinnlib.balancing

    names = balancer_cost.balancers(2)
    built = {type(make()).__name__ for make in names.values()}
    public = set(pinnlib.balancing.__all__) - {"Balancer"}
    assert public <= built, f"not in the cost table: {sorted(public - built)}"
    proc = _run(
        "balancer_cost.py",
        *("--only", "ConFIG", "--points", "8", "--steps", "1", "--rounds", "1"),
    )
    assert proc.returncode == 0, proc.stderr
    rows = [ln for ln in proc.stdout.splitlines() if ln.startswith(("Sum ", "ConFIG "))]
    assert len(rows) == 4  # Sum and ConFIG, CPU and wall clock


def test_balancer_cost_refuses_bad_input_by_name():
    proc = _run("balancer_cost.py", "--only", "Nope")
    assert proc.returncode == 2 and "unknown balancer(s) ['Nope']" in proc.stderr
    proc = _run("balancer_cost.py", "--points", "2")
    assert proc.returncode == 2 and "--points at least 4" in proc.stderr
