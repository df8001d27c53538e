"""Time per step of every balancer against Sum, taking turns in one process (README's table).

Each balancer gets its own compiled ``pinnlib.Trainer`` (4 x 50 tanh, 1024 + 1024 points, XLA)
on the same problem; :func:`pinnlib.stats.interleaved_times` times them in turns and
:func:`pinnlib.stats.relative_cost` gives each one's time per step over Sum's, per round. A
second Sum is the machine's noise. "per-term gradients only" (LRAnnealing that never updates)
is the price of the per-term backward passes that every gradient-based balancer pays before its
own arithmetic. NTKWeights is also timed updating every step (the cost of one update) and never
(the cost between updates): a block of ``steps`` steps holds an update only when it crosses a
multiple of the period, so for periods longer than a block the amortised cost is better
computed as (cost between updates) + (cost of one update) / period.

    python benchmarks/balancer_cost.py [--problem helmholtz|kirchhoff] [--rounds 5]
        [--steps 100] [--points 1024]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def balancers(n: int) -> dict:
    """Every balancer of pinnlib with the defaults the book uses, by display name."""
    import pinnlib

    return {
        "Sum": lambda: pinnlib.Sum(n),
        "Sum (second copy)": lambda: pinnlib.Sum(n),
        "Fixed": lambda: pinnlib.Fixed([1.0] * n),
        "SoftAdapt": lambda: pinnlib.SoftAdapt(n),
        "ReLoBRaLo": lambda: pinnlib.ReLoBRaLo(n, seed=0),
        "HomoscedasticUncertainty": lambda: pinnlib.HomoscedasticUncertainty(n),
        "per-term gradients only": lambda: pinnlib.LRAnnealing(n, update_every=10**9),
        "LRAnnealing (published)": lambda: pinnlib.LRAnnealing(n),
        "LRAnnealing (authors_code)": lambda: pinnlib.LRAnnealing(n, form="authors_code"),
        "GradNorm": lambda: pinnlib.GradNorm(n),
        "GlobalGradNorm": lambda: pinnlib.GlobalGradNorm(n),
        "ConFIG": lambda: pinnlib.ConFIG(n),
        "NTKWeights (every 1000)": lambda: pinnlib.NTKWeights(n, update_every=1000),
        "NTKWeights (never after step 0)": lambda: pinnlib.NTKWeights(n, update_every=10**9),
        "NTKWeights (every step)": lambda: pinnlib.NTKWeights(n, update_every=1),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", choices=["helmholtz", "kirchhoff"], default="helmholtz")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=100, help="steps per timed block")
    parser.add_argument("--points", type=int, default=1024, help="interior and boundary points")
    parser.add_argument("--only", action="append", help="only these balancers (and Sum)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.steps < 1 or args.points < 4:
        parser.error(
            f"--rounds and --steps must be at least 1 and --points at least 4, got "
            f"{args.rounds}, {args.steps}, {args.points}"
        )
    import numpy as np

    import pinnlib
    from pinnlib.stats import interleaved_times, relative_cost

    pde = pinnlib.Helmholtz() if args.problem == "helmholtz" else pinnlib.Kirchhoff()
    makers = balancers(pde.num_terms)
    if args.only:
        unknown = sorted(set(args.only) - set(makers))
        if unknown:
            parser.error(f"unknown balancer(s) {unknown}; choose from {sorted(makers)}")
        makers = {k: v for k, v in makers.items() if k == "Sum" or k in args.only}
    steps = {}
    for name, make in makers.items():
        trainer = pinnlib.Trainer(
            pinnlib.mlp(2, 4, 50, seed=0),
            pde,
            make(),
            seed=0,
            n_interior=args.points,
            n_boundary=args.points,
        )
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
                f"{name:32s} {ms:9.2f}  {r.median:6.2f} [{min(r.values):.2f}, {max(r.values):.2f}]"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
