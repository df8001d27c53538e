"""What the default evaluation schedule costs ``pinnlib.train``, measured two ways.

``benchmarks/run.py`` reports the time outside the compiled steps of a ``pinnlib.train`` call:
evaluations, but also building the trainer, the grid, the reference solution and tracing the
first evaluation. This script isolates the evaluations (ReLoBRaLo, 1024 + 1024 points):

1. Difference: two trainers, compiled beforehand, take turns training ``steps`` more steps,
   one with the default schedule (an evaluation every ``steps // 20`` steps), the other
   evaluating only at the start and the end; the median extra wall time of the default
   schedule over its call, in wall time and in CPU time (the rounds alternate the order:
   A B, B A, ...). On a shared machine this difference moves by a few per cent from run to run.
2. Directly: one compiled evaluation on the default 256 x 256 grid (median of 20) times the
   number of extra evaluations, over the training time.

    python benchmarks/eval_cost.py [--problems helmholtz kirchhoff burgers] [--steps 1520]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import cases  # noqa: E402  (benchmarks/cases.py: the same problem set-up as the speed table)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--problems", nargs="+", choices=cases.PROBLEMS, default=list(cases.PROBLEMS)
    )
    parser.add_argument("--steps", type=int, default=1520, help="steps per call (plate: / 3)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    # The plate trains steps // 3, and the default schedule needs at least 20 of them to
    # evaluate more than at the end.
    if args.steps < 60:
        parser.error(
            f"--steps must be at least 60 (20 evaluations of the plate's steps // 3), got {args.steps}"
        )
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    import numpy as np

    import pinnlib

    # The compiled evaluation that train() builds (private: a benchmark may look inside).
    from pinnlib.training.loop import _Evaluation

    for problem in args.problems:
        steps = args.steps // 3 if problem == "kirchhoff" else args.steps
        pde, make = cases._problem(problem)
        schedules = {"default": steps // 20, "ends only": 10**9}
        trainers = {
            k: pinnlib.Trainer(make(), pde, pinnlib.ReLoBRaLo(pde.num_terms, seed=0), seed=0)
            for k in schedules
        }
        for trainer in trainers.values():  # compile the step and the evaluation
            trainer.run(20, eval_every=20, progress=False)
        walls = {k: [] for k in schedules}
        cpus = {k: [] for k in schedules}
        for r in range(args.rounds):
            order = list(trainers) if r % 2 == 0 else list(trainers)[::-1]  # A B, B A, ...
            for k in order:
                trainer = trainers[k]
                done = len(trainer.history.total)
                t0, c0 = time.perf_counter(), time.process_time()
                trainer.run(done + steps, eval_every=schedules[k], progress=False)
                walls[k].append(time.perf_counter() - t0)
                cpus[k].append(time.process_time() - c0)
        default, ends = (float(np.median(walls[k])) for k in schedules)
        cpu_default, cpu_ends = (float(np.median(cpus[k])) for k in schedules)
        extra = steps // schedules["default"] - 1  # evaluations beyond the one at the end
        evaluation = _Evaluation(trainers["default"]._layout, 256)
        evaluation.errors().numpy()
        times = []
        for _ in range(20):
            t0 = time.perf_counter()
            evaluation.errors().numpy()
            times.append(time.perf_counter() - t0)
        one = float(np.median(times))
        print(
            f"{problem}: {steps} steps, {default:.2f} s with an evaluation every "
            f"{schedules['default']} steps, {ends:.2f} s without (medians of {args.rounds}): "
            f"{100 * (default - ends) / ends:+.1f} % wall, "
            f"{100 * (cpu_default - cpu_ends) / cpu_ends:+.1f} % CPU time; directly: one evaluation "
            f"{1000 * one:.1f} ms, {extra} of them {100 * extra * one / ends:.1f} % of the training",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
