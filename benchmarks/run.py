"""Speed table: pinnlib against a plain nested-tape PINN and DeepXDE, as ratios.

Every row runs in its own process (``benchmarks/cases.py``) on the same problem: 4 x 50 tanh,
1024 interior + 1024 boundary points, Adam. Ratios are against pinnlib measured in the same
run of this script, never against numbers from elsewhere. Run with ``make bench``; quote the
table with the machine it ran on.

    python benchmarks/run.py [--steps 300] [--quick]
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


def measure(case: str, problem: str, steps: int, warmup: int) -> dict | None:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PINNLIB_BUDGET="full")
    cmd = [
        sys.executable,
        str(HERE / "cases.py"),
        case,
        problem,
        "--steps",
        str(steps),
        "--warmup",
        str(warmup),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        print(f"  {case} {problem}: failed ({' | '.join(tail)})", file=sys.stderr)
        return None
    return json.loads(lines[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="timed steps per case")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="skip DeepXDE and Kirchhoff")
    parser.add_argument(
        "--rounds", type=int, default=2, help="alternating rounds over the cases; best kept"
    )
    args = parser.parse_args(argv)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )

    rows = []
    problems = ["helmholtz"] if args.quick else ["helmholtz", "kirchhoff"]
    for problem in problems:
        steps = args.steps if problem == "helmholtz" else max(args.steps // 3, 30)
        cases = ["pinnlib", "pinnlib-tape", "plain", "plain-xla"]
        if problem == "helmholtz" and not args.quick:
            cases.append("deepxde")
        # Cases take turns, round after round, and each keeps its best round: a burst of other
        # work on the machine then slows one round of a case, not the case.
        best = {}
        for _ in range(max(args.rounds, 1)):
            for case in cases:
                r = measure(case, problem, steps, args.warmup)
                if r is None:
                    continue
                print(f"  measured {problem:9s} {case:13s} {r['result']:8.1f} steps/s", flush=True)
                if case not in best or r["result"] > best[case]["result"]:
                    best[case] = r
        base = best["pinnlib"]["result"] if "pinnlib" in best else None
        for case in cases:
            if case in best:
                rows.append((problem, case, best[case]["result"], best[case]["peak_mb"], base))
        pair = measure("pair", problem, steps, args.warmup)
        if pair:
            s, rl = pair["result"]["sum"], pair["result"]["relobralo"]
            rows.append((problem, "pinnlib Sum*", s, pair["peak_mb"], None))
            rows.append((problem, "pinnlib ReLoBRaLo*", rl, pair["peak_mb"], None))
            print(f"  ReLoBRaLo on {problem}: {100 * (s / rl - 1):+.1f} % time per step over Sum")
        group = measure("together", problem, steps, args.warmup)
        if group:
            alone, together = group["result"]["alone"], group["result"]["together"]
            rows.append((problem, "one run, train (ReLoBRaLo)+", alone, group["peak_mb"], None))
            rows.append((problem, "3 runs, train_together+", together, group["peak_mb"], None))
            print(
                f"  3 runs together on {problem}: {together / alone:.2f}x the run-steps per second"
            )

    names = {
        "pinnlib": "pinnlib (forward mode, XLA)",
        "pinnlib-tape": "pinnlib (nested tapes, XLA)",
        "plain": "plain nested-tape tf.function",
        "plain-xla": "plain nested-tape + XLA",
        "deepxde": "DeepXDE 1.15 (TF2, fixed points)",
    }
    print()
    print("| problem | implementation | steps/s | pinnlib speed-up | peak RSS (MB) |")
    print("|---|---|---:|---:|---:|")
    for problem, case, rate, peak, base in rows:
        ratio = f"{base / rate:.2f}x" if base and case in names else ""
        print(f"| {problem} | {names.get(case, case)} | {rate:.1f} | {ratio} | {peak:.0f} |")
    print(
        f"\nsteps/s: best of {max(args.rounds, 1)} alternating rounds, each case in its own process."
        "\n* Sum and ReLoBRaLo measured interleaved in one process (median of 5 blocks of --steps steps)."
        "\n+ run-steps per second (3 runs x steps/s for the group), best of 2 alternations in one"
        " process, from the histories (compilation excluded, chunked read-back included)."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
