"""How the compiled step's time grows with the number of points.

The work of a PINN step is linear in the points, so its time should be too; where it grows
faster, the step has outgrown a CPU cache (or the device's parallelism) and splitting the points
into smaller batches would pay. Each problem's ``pinnlib.Trainer`` (ReLoBRaLo, XLA) is built
once per point count, and the counts take turns over the rounds
(:func:`pinnlib.stats.interleaved_times`); the script prints the median
time per step and per 1000 points.

    python benchmarks/point_scaling.py [--problems kirchhoff] [--points 256 512 1024 2048]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import cases  # noqa: E402  (the same problems and networks as the speed table)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", nargs="+", choices=cases.PROBLEMS, default=["kirchhoff"])
    parser.add_argument("--points", nargs="+", type=int, default=[256, 512, 1024, 2048])
    parser.add_argument("--steps", type=int, default=40, help="steps per timed block")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args(argv)
    bad = [n for n in args.points if n < 8]
    if bad:
        parser.error(f"--points must all be at least 8 (points per set), got {bad}")
    if args.steps < 1 or args.rounds < 1:
        parser.error(f"--steps and --rounds must be at least 1, got {args.steps}, {args.rounds}")
    import numpy as np

    import pinnlib

    for problem in args.problems:
        pde, make = cases._problem(problem)
        trainers = {}
        for n in args.points:  # n interior and n boundary points
            balancer = pinnlib.ReLoBRaLo(pde.num_terms, seed=0)
            trainer = pinnlib.Trainer(make(), pde, balancer, seed=0, n_interior=n, n_boundary=n)
            for _ in range(5):  # trace, compile, warm up
                trainer.train_step()[0].numpy()
            trainers[n] = trainer
        # pinnlib.stats.interleaved_times: one block per point count in each round, in turns.
        times = pinnlib.stats.interleaved_times(
            {str(n): t.train_step for n, t in trainers.items()},
            rounds=args.rounds,
            block_steps=args.steps,
        )["wall"]
        print(f"{problem} (n interior + n boundary points, median of {args.rounds} blocks):")
        for n in trainers:
            ms = 1e3 * float(np.median(times[str(n)]))
            print(
                f"  n = {n:5d}: {ms:7.2f} ms per step, {1e3 * ms / (2 * n):6.2f} ms per 1000 points"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
