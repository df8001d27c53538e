"""Time per step of ConFIG and NTKWeights against Sum, taking turns in one process.

Each method gets its own compiled ``pinnlib.Trainer`` (4 x 50 tanh, 1024 + 1024 points, XLA);
:func:`pinnlib.stats.interleaved_times` times them in turns and
:func:`pinnlib.stats.relative_cost` gives each one's time per step over Sum's, per round.
A second Sum is the machine's noise; "per-term gradients only" (LRAnnealing that never
updates) is what ConFIG pays for its per-term backward passes before its own arithmetic;
NTKWeights is timed updating every 100 and 1000 steps, never (its cost between updates) and
every step (the cost of one update). A timed block of ``steps`` steps holds an NTK update only
when it crosses a multiple of the period, so for periods longer than a block the amortised
cost is better computed as (cost between updates) + (cost of one update) / period.

    python benchmarks/config_ntk_cost.py [--problem helmholtz|kirchhoff] [--rounds 5]
        [--steps 100]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", choices=["helmholtz", "kirchhoff"], default="helmholtz")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=100, help="steps per timed block")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.steps < 1:
        parser.error(f"--rounds and --steps must be at least 1, got {args.rounds}, {args.steps}")
    import numpy as np

    import pinnlib
    from pinnlib.stats import interleaved_times, relative_cost

    pde = pinnlib.Helmholtz() if args.problem == "helmholtz" else pinnlib.Kirchhoff()
    n = pde.num_terms
    makers = {
        "Sum": lambda: pinnlib.Sum(n),
        "Sum (second copy)": lambda: pinnlib.Sum(n),
        "per-term gradients only": lambda: pinnlib.LRAnnealing(n, update_every=10**9),
        "ConFIG": lambda: pinnlib.ConFIG(n),
        "NTK every 100": lambda: pinnlib.NTKWeights(n, update_every=100),
        "NTK every 1000": lambda: pinnlib.NTKWeights(n, update_every=1000),
        "NTK never (after step 0)": lambda: pinnlib.NTKWeights(n, update_every=10**9),
        "NTK every step": lambda: pinnlib.NTKWeights(n, update_every=1),
    }
    steps = {}
    for name, make in makers.items():
        trainer = pinnlib.Trainer(pinnlib.mlp(2, 4, 50, seed=0), pde, make(), seed=0)
        start = time.perf_counter()
        trainer.train_step()[0].numpy()  # traces and compiles
        print(f"{name}: first step (compiling) {time.perf_counter() - start:.1f} s", flush=True)
        steps[name] = trainer.train_step
    times = interleaved_times(steps, rounds=args.rounds, block_steps=args.steps)
    for clock in ("cpu", "wall"):
        ratios = relative_cost(times[clock], "Sum")
        print(f"-- {args.problem}, {clock} clock: ms per step; ratio to Sum: median [min, max]")
        for name in makers:
            r = ratios[name]
            ms = 1e3 * float(np.median(times[clock][name]))
            print(
                f"{name:28s} {ms:9.2f}  {r.median:6.2f} [{min(r.values):.2f}, {max(r.values):.2f}]"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
