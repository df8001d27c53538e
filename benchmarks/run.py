"""Speed table: pinnlib against a plain nested-tape PINN and DeepXDE, as ratios.

Every row runs in its own process (``benchmarks/cases.py``) on the same problem: 4 x 50 tanh,
1024 interior + 1024 boundary points, Adam. Ratios are between rates measured in the same run
of this script, never against numbers from elsewhere. Next to each compiled step, the table
times ``pinnlib.train`` end to end as users call it (defaults: ReLoBRaLo, the default
evaluation schedule, history read-back) and reports what the evaluation costs. Run with
``make bench`` (about 15 minutes on 2 CPU cores); quote the table with the machine it ran on.
On a machine busy with other work, ``--cpu-time`` runs every case on one TensorFlow thread and
measures CPU seconds, which the load moves far less than wall time.

    python benchmarks/run.py [--steps 300] [--train-steps 1500] [--rounds 2] [--quick] [--cpu-time]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

CASES = {
    "helmholtz": ["pinnlib", "pinnlib-tape", "plain", "plain-xla", "deepxde", "train", "floor"],
    "kirchhoff": [
        "pinnlib",
        "pinnlib-jets",
        "pinnlib-tape",
        "plain",
        "plain-xla",
        "train",
        "floor",
    ],
    "burgers": ["pinnlib", "pinnlib-tape", "plain", "plain-xla", "train", "floor"],
}
NAMES = {
    "pinnlib": "pinnlib step (forward mode, XLA)",
    "pinnlib-jets": "pinnlib step (directional 4th-order jets, XLA)",
    "pinnlib-tape": "pinnlib step (nested tapes, XLA)",
    "plain": "plain nested-tape tf.function",
    "plain-xla": "plain nested-tape + XLA",
    "deepxde": "DeepXDE 1.15 (TF2, fixed points)",
    "train": "pinnlib.train end to end (ReLoBRaLo, defaults)",
    "floor": "no derivatives: u only (ceiling for any PINN step)",
}
# The forward Laplacian (Helmholtz), the forward bi-Laplacian (Kirchhoff), Taylor jets (Burgers).
FORWARD = {"helmholtz": "Laplacian", "kirchhoff": "bi-Laplacian", "burgers": "jets"}


CPU_TIME = False  # --cpu-time: every case on one thread, timed in CPU seconds


def measure(case: str, problem: str, steps: int, warmup: int) -> dict | None:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PINNLIB_BUDGET="full")
    cmd = [sys.executable, str(HERE / "cases.py"), case, problem]
    cmd += ["--steps", str(steps), "--warmup", str(warmup)] + (["--cpu-time"] if CPU_TIME else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        print(f"  {case} {problem}: failed ({' | '.join(tail)})", file=sys.stderr)
        return None
    return json.loads(lines[-1])


def cpu_model() -> str:
    """The CPU's model name (the ratios depend on it), where Linux tells it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def rate_of(r: dict) -> float:
    res = r["result"]
    return res["rate"] if isinstance(res, dict) else res


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="timed steps per case")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument(
        "--train-steps", type=int, default=1500, help="steps of the pinnlib.train case"
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="alternating rounds over the cases; best kept"
    )
    parser.add_argument(
        "--problems", nargs="+", choices=list(CASES), default=list(CASES), metavar="PROBLEM"
    )
    parser.add_argument(
        "--quick", action="store_true", help="a fast check: 20 steps, 1 round (numbers are noise)"
    )
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="one TensorFlow thread per case, rates in CPU seconds (steadier on a busy machine)",
    )
    args = parser.parse_args(argv)
    global CPU_TIME
    CPU_TIME = args.cpu_time
    if args.quick:
        args.steps, args.warmup, args.train_steps, args.rounds = 20, 5, 100, 1
    rounds = max(args.rounds, 1)
    print(
        f"machine: {platform.machine()} ({cpu_model()}), {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}"
    )
    if CPU_TIME:
        print("clock: CPU seconds of each case's process, TensorFlow on one thread (--cpu-time)")

    rows, notes, gpu = [], [], False
    for problem in args.problems:
        # The plate's steps are several times slower: fewer of them keep the run short.
        scale = 3 if problem == "kirchhoff" else 1
        steps = max(args.steps // scale, 10)
        train_steps = max(args.train_steps // scale, 20)
        cases = CASES[problem]
        # Cases take turns, round after round, and each keeps its best round: a burst of other
        # work on the machine then slows one round of a case, not the case.
        best, skipped = {}, {}
        for _ in range(rounds):
            for case in cases:
                if case in skipped:
                    continue
                n = train_steps if case == "train" else steps
                r = measure(case, problem, n, args.warmup)
                if r is None:
                    continue
                gpu = gpu or r.get("gpu_peak_mb") is not None
                if isinstance(r["result"], dict) and "skipped" in r["result"]:
                    skipped[case] = r["result"]["skipped"]
                    print(f"  skipped  {problem:9s} {case:13s} {skipped[case]}", flush=True)
                    continue
                print(f"  measured {problem:9s} {case:13s} {rate_of(r):8.1f} steps/s", flush=True)
                if case not in best or rate_of(r) > rate_of(best[case]):
                    best[case] = r
        base = rate_of(best["pinnlib"]) if "pinnlib" in best else None
        plain = rate_of(best["plain"]) if "plain" in best else None
        for case in cases:
            if case in best:
                r = best[case]
                rows.append((problem, case, rate_of(r), r, base, plain))
            elif case in skipped:
                rows.append((problem, case, None, {"skipped": skipped[case]}, None, None))
        if "train" in best:
            t = best["train"]["result"]
            vs = f", {t['rate'] / plain:.2f}x the plain step" if plain else ""
            each = f"at most {1000 * t['outside_s'] / t['evals']:.0f} ms each" if t["evals"] else ""
            notes.append(
                f"pinnlib.train on {problem} ({train_steps + args.warmup} steps): "
                f"{t['rate']:.1f} steps/s end to end{vs}; compiled step alone in it "
                f"{t['step_rate']:.1f} steps/s; {t['evals']} evaluations ({each}) and setup "
                f"take {100 * t['outside_share']:.1f} % of the time (first step's compilation, "
                f"{t['compile_s']:.1f} s, excluded)"
            )
        if problem == "burgers":
            continue  # the balancing overhead and stacking rows cover the two article problems
        pair = measure("pair", problem, steps, args.warmup)
        if pair:
            s, rl = pair["result"]["sum"], pair["result"]["relobralo"]
            rows.append((problem, "pinnlib Sum*", s, pair, None, None))
            rows.append((problem, "pinnlib ReLoBRaLo*", rl, pair, None, None))
            notes.append(
                f"ReLoBRaLo on {problem}: {100 * (s / rl - 1):+.1f} % time per step over Sum"
            )
        group = measure("together", problem, steps, args.warmup)
        if group:
            alone, together = group["result"]["alone"], group["result"]["together"]
            rows.append((problem, "one run, train (ReLoBRaLo)+", alone, group, None, None))
            rows.append((problem, "3 runs, train_together+", together, group, None, None))
            notes.append(f"3 runs together on {problem}: {together / alone:.2f}x the run-steps/s")

    print()
    head = "| problem | implementation | steps/s | pinnlib step / this | this / plain | peak RSS (MB) |"
    rule = "|---|---|---:|---:|---:|---:|"
    if gpu:
        head, rule = head + " GPU peak (MB) |", rule + "---:|"
    print(head)
    print(rule)
    for problem, case, rate, r, base, plain in rows:
        name = NAMES.get(case, case)
        if case == "pinnlib":
            name = f"pinnlib step (forward {FORWARD[problem]}, XLA)"
        if rate is None:
            print(f"| {problem} | {name} | {r['skipped']} | | | |" + (" |" if gpu else ""))
            continue
        speedup = f"{base / rate:.2f}x" if base and case in NAMES and case != "train" else ""
        vs_plain = f"{rate / plain:.2f}x" if plain and case in NAMES else ""
        line = f"| {problem} | {name} | {rate:.1f} | {speedup} | {vs_plain} | {r['peak_mb']:.0f} |"
        if gpu:
            g = r.get("gpu_peak_mb")
            line += f" {g:.0f} |" if g is not None else " |"
        print(line)
    print(
        f"\nsteps/s{' (per CPU second, one thread)' if CPU_TIME else ''}: best of {rounds}"
        " alternating rounds, each case in its own process; peak RSS"
        " of that process (and the GPU allocator's peak, with a GPU)."
        "\npinnlib.train: steps after the first (compilation) over the wall time of the call,"
        " evaluations and read-back included."
        "\n* Sum and ReLoBRaLo measured interleaved in one process (median of 5 blocks)."
        "\n+ run-steps per second (3 runs x steps/s for the group), best of 2 alternations in one"
        " process, from the histories (compilation excluded, chunked read-back included; wall"
        " clock, also with --cpu-time)."
    )
    for note in notes:
        print(f"- {note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
