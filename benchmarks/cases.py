"""One benchmark case per process: prints a JSON line with its rate and peak memory.

Run by ``benchmarks/run.py``; each case runs in a fresh interpreter so TensorFlow state,
thread pools and XLA caches never leak from one measurement into the next, and the peak memory
(resident set size; the GPU allocator's peak where a GPU is present) is the case's own. Every
case trains the same problem the same way: a 4 x 50 tanh MLP, 1024 interior + 1024 boundary
points, Adam with learning rate 1e-3, and reports the rate of the timed steps after a warm-up
(which absorbs tracing and XLA compilation).

    python benchmarks/cases.py pinnlib helmholtz --steps 500
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

N_INTERIOR = N_BOUNDARY = 1024
LAYERS, WIDTH = 4, 50
PROBLEMS = ("helmholtz", "kirchhoff", "burgers")


# The clock the rates are measured with: wall time by default; with --cpu-time, the CPU time of
# this process, TensorFlow limited to one thread (see use_cpu_time).
clock = time.perf_counter


def use_cpu_time() -> None:
    """Measure CPU seconds of this process with TensorFlow on one thread.

    On a machine shared with other work, wall-clock rates move with the load (25 % between two
    rounds was seen on a 2-core machine running other jobs). The CPU time a single-threaded
    process spends on a step moves far less, so ratios measured this way compare the work each
    implementation does; they do not show what a second core adds.
    """
    global clock
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    clock = time.process_time


def _rate(step, steps: int, warmup: int) -> float:
    for _ in range(warmup):
        step()
    t0 = clock()
    for _ in range(steps):
        out = step()
    # Reading the last step's outputs waits for the steps still running asynchronously.
    _ = [o.numpy() for o in _flatten(out) if hasattr(o, "numpy")]
    return steps / (clock() - t0)


def _flatten(out):
    if isinstance(out, dict):
        out = list(out.values())
    return [x for o in out for x in _flatten(o)] if isinstance(out, (list, tuple)) else [out]


# -- pinnlib as users get it ----------------------------------------------------------------
def _problem(problem: str, jets: bool = False):
    """The pinnlib PDE and its network (input map on the boxes other than [-1, 1]^2)."""
    import pinnlib

    if jets:
        from pinnlib.derivatives import forward_derivatives

        class DirectionalKirchhoff(pinnlib.Kirchhoff):
            """The plate as pinnlib computed it before the forward bi-Laplacian: four directional
            fourth-order jets (17 blocks through each layer instead of 9)."""

            def biharmonic(self, model, points, mode="auto"):
                d = forward_derivatives(model, points, [(4, 0), (2, 2), (0, 4)])
                return d[(4, 0)] + 2.0 * d[(2, 2)] + d[(0, 4)]

        pde = DirectionalKirchhoff()
    else:
        pde = {
            "helmholtz": pinnlib.Helmholtz,
            "kirchhoff": pinnlib.Kirchhoff,
            "burgers": pinnlib.Burgers,
        }[problem]()
    kwargs = {"input_range": (pde.lower, pde.upper)} if problem != "helmholtz" else {}
    return pde, lambda seed=0: pinnlib.mlp(2, LAYERS, WIDTH, seed=seed, **kwargs)


def _step(trainer):
    """The trainer's compiled step: ``Trainer.train_step`` (one step, nothing read back)."""
    return trainer.train_step


def pinnlib_case(problem: str, steps: int, warmup: int, mode: str = "auto", jets: bool = False):
    import pinnlib

    pde, make = _problem(problem, jets)
    trainer = pinnlib.Trainer(
        make(),
        pde,
        n_interior=N_INTERIOR,
        n_boundary=N_BOUNDARY,
        seed=0,
        jit_compile=True,
        derivative_mode=mode,
    )
    # Trainer.run includes evaluation on a grid; time the compiled step directly instead (the
    # "train" case times train() as a whole).
    return _rate(_step(trainer), steps, warmup)


def train_case(problem: str, steps: int, warmup: int):
    """``pinnlib.train`` end to end as users call it: ReLoBRaLo, the default evaluation
    schedule, history read-back, no progress bar. The rate excludes only the first step's
    tracing and XLA compilation (reported apart); the time outside the compiled steps and their
    read-back (the evaluations on the grid, the reference solution, setup) is reported as a
    share, from the history's own clock."""
    import pinnlib

    pde, make = _problem(problem)
    model = make()
    total = steps + warmup
    balancer = pinnlib.ReLoBRaLo(pde.num_terms, seed=0)
    if clock is time.process_time:
        # CPU time: compile with a short first call of the same Trainer that pinnlib.train
        # builds, then time the rest (its evaluations, at train()'s default schedule for
        # `total` steps, and the read-backs included).
        trainer = pinnlib.Trainer(model, pde, balancer, seed=0)
        before = trainer.run(warmup, eval_every=warmup, progress=False).info["seconds"]
        t0, w0 = clock(), time.perf_counter()
        history = trainer.run(total, progress=False)
        cpu, wall = clock() - t0, time.perf_counter() - w0
        info = history.info
        outside = wall - (info["seconds"] - before)  # the share from the wall clocks
        return {
            "rate": steps / cpu,
            "step_rate": info["steps_per_second"],
            "outside_share": outside / wall,
            "evals": int(history.eval_step.size) - 1,
            "outside_s": outside,
            "compile_s": info.get("first_step_seconds") or 0.0,
            "jit_compile": info.get("jit_compile"),
        }
    t0 = time.perf_counter()
    history = pinnlib.train(model, pde, balancer, steps=total, seed=0, progress=False)
    wall = time.perf_counter() - t0
    info = history.info
    compile_s = info.get("first_step_seconds") or 0.0
    outside = wall - info["seconds"]
    return {
        "rate": (total - 1) / (wall - compile_s),
        "step_rate": info["steps_per_second"],
        "outside_share": outside / (wall - compile_s),
        "evals": int(history.eval_step.size),
        "outside_s": outside,
        "compile_s": compile_s,
        "jit_compile": info.get("jit_compile"),
    }


def pinnlib_pair(problem: str, steps: int, warmup: int, blocks: int = 5):
    """Sum and ReLoBRaLo interleaved in one process (``blocks`` blocks of ``steps`` each), so
    both see the same machine state."""
    import pinnlib

    pde, make = _problem(problem)
    fns = {}
    for name in ("sum", "relobralo"):
        bal = pinnlib.ReLoBRaLo(pde.num_terms, seed=0) if name == "relobralo" else None
        fns[name] = _step(pinnlib.Trainer(make(), pde, bal, seed=0, jit_compile=True))
    rates = {name: [] for name in fns}
    for _ in range(blocks):
        for name, fn in fns.items():
            rates[name].append(_rate(fn, steps, warmup if not rates[name] else 5))
    return {name: sorted(r)[len(r) // 2] for name, r in rates.items()}


def pinnlib_together(problem: str, steps: int, warmup: int, runs: int = 3, rounds: int = 2):
    """Run-steps per second: one run with ``pinnlib.train`` against ``runs`` runs in one
    compiled step with ``pinnlib.train_together``, alternating ``rounds`` times in one process.
    Both rates come from the histories (compilation excluded, chunked read-back included)."""
    import pinnlib

    pde, make = _problem(problem)
    common = dict(
        steps=steps + warmup,
        n_interior=N_INTERIOR,
        n_boundary=N_BOUNDARY,
        eval_every=10**9,
        eval_points=8,
        progress=False,
        jit_compile=True,
    )
    rates = {"alone": [], "together": []}
    for _ in range(rounds):
        h = pinnlib.train(make(), pde, pinnlib.ReLoBRaLo(pde.num_terms, seed=0), seed=0, **common)
        rates["alone"].append(h.info["steps_per_second"])
        models = [make(s) for s in range(runs)]
        balancers = [pinnlib.ReLoBRaLo(pde.num_terms, seed=s) for s in range(runs)]
        hs = pinnlib.train_together(models, pde, balancers, seeds=list(range(runs)), **common)
        rates["together"].append(runs * hs[0].info["steps_per_second"])
    return {k: max(v) for k, v in rates.items()}


# -- a plain nested-tape PINN, as one writes it from the TensorFlow docs ---------------------
def _plain_parts():
    """The plain cases' Keras network (4 x 50 tanh), its built Adam and a seeded generator for
    the points."""
    import keras
    import tensorflow as tf

    tf.random.set_seed(0)
    model = keras.Sequential(
        [keras.Input((2,))]
        + [keras.layers.Dense(WIDTH, activation="tanh") for _ in range(LAYERS)]
        + [keras.layers.Dense(1)]
    )
    opt = keras.optimizers.Adam(1e-3)
    opt.build(model.trainable_variables)
    gen = tf.random.Generator.from_seed(0)
    return model, opt, gen


def plain_case(problem: str, steps: int, warmup: int, jit: bool = False):
    import numpy as np
    import tensorflow as tf

    model, opt, gen = _plain_parts()
    pi = np.pi

    def edges(lo, hi):
        n = N_BOUNDARY // 4
        s = gen.uniform([n, 1], lo, hi)
        lo_c, hi_c = tf.fill([n, 1], lo), tf.fill([n, 1], hi)
        return [tf.concat(p, 1) for p in ([lo_c, s], [hi_c, s], [s, lo_c], [s, hi_c])]

    if problem == "helmholtz":

        def losses():
            x = gen.uniform([N_INTERIOR, 1], -1.0, 1.0)
            y = gen.uniform([N_INTERIOR, 1], -1.0, 1.0)
            with tf.GradientTape(persistent=True) as t2:
                t2.watch([x, y])
                with tf.GradientTape(persistent=True) as t1:
                    t1.watch([x, y])
                    u = model(tf.concat([x, y], 1))
                ux, uy = t1.gradient(u, x), t1.gradient(u, y)
            uxx, uyy = t2.gradient(ux, x), t2.gradient(uy, y)
            q = (1.0 - pi**2 - 16 * pi**2) * tf.sin(pi * x) * tf.sin(4 * pi * y)
            lf = tf.reduce_mean((uxx + uyy + u - q) ** 2)
            lb = tf.reduce_mean(model(tf.concat(edges(-1.0, 1.0), 0)) ** 2)
            return [lf, lb]

    elif problem == "burgers":
        nu = 0.01 / pi

        def losses():
            x = gen.uniform([N_INTERIOR, 1], -1.0, 1.0)
            t = gen.uniform([N_INTERIOR, 1], 0.0, 1.0)
            with tf.GradientTape() as t2:
                t2.watch(x)
                with tf.GradientTape(persistent=True) as t1:
                    t1.watch([x, t])
                    u = model(tf.concat([x, t], 1))
                ux = t1.gradient(u, x)
            ut, uxx = t1.gradient(u, t), t2.gradient(ux, x)
            lf = tf.reduce_mean((ut + u * ux - nu * uxx) ** 2)
            n_ic = N_BOUNDARY // 2
            x0 = gen.uniform([n_ic, 1], -1.0, 1.0)
            u0 = model(tf.concat([x0, tf.zeros_like(x0)], 1))
            lic = tf.reduce_mean((u0 + tf.sin(pi * x0)) ** 2)
            n_wall = (N_BOUNDARY - n_ic) // 2
            tw = gen.uniform([2 * n_wall, 1], 0.0, 1.0)
            xw = tf.concat([-tf.ones([n_wall, 1]), tf.ones([n_wall, 1])], 0)
            lbc = tf.reduce_mean(model(tf.concat([xw, tw], 1)) ** 2)
            return [lf, lic, lbc]

    else:  # kirchhoff, W = H = 10 m, units of pinnlib.Kirchhoff()
        D, nu, p0, W = 30000.0 * 0.2**3 / (12 * (1 - 0.04)), 0.2, 0.015, 10.0

        def losses():
            x = gen.uniform([N_INTERIOR, 1], 0.0, W)
            y = gen.uniform([N_INTERIOR, 1], 0.0, W)
            with tf.GradientTape(persistent=True) as t4:
                t4.watch([x, y])
                with tf.GradientTape(persistent=True) as t3:
                    t3.watch([x, y])
                    with tf.GradientTape(persistent=True) as t2:
                        t2.watch([x, y])
                        with tf.GradientTape(persistent=True) as t1:
                            t1.watch([x, y])
                            w = model(tf.concat([x, y], 1))
                        wx, wy = t1.gradient(w, x), t1.gradient(w, y)
                    wxx, wyy = t2.gradient(wx, x), t2.gradient(wy, y)
                wxxx, wxxy = t3.gradient(wxx, x), t3.gradient(wxx, y)
                wyyy = t3.gradient(wyy, y)
            wxxxx, wxxyy, wyyyy = t4.gradient(wxxx, x), t4.gradient(wxxy, y), t4.gradient(wyyy, y)
            p = p0 * tf.sin(pi * x / W) * tf.sin(pi * y / W)
            lf = tf.reduce_mean((D * (wxxxx + 2 * wxxyy + wyyyy) - p) ** 2)
            left, right, bottom, top = edges(0.0, W)
            b = tf.concat([left, right, bottom, top], 0)
            bx, by = b[:, :1], b[:, 1:]
            with tf.GradientTape(persistent=True) as s2:
                s2.watch([bx, by])
                with tf.GradientTape(persistent=True) as s1:
                    s1.watch([bx, by])
                    wb = model(tf.concat([bx, by], 1))
                gx, gy = s1.gradient(wb, bx), s1.gradient(wb, by)
            bxx, byy = s2.gradient(gx, bx), s2.gradient(gy, by)
            n = N_BOUNDARY // 2
            m = tf.concat([bxx[:n] + nu * byy[:n], nu * bxx[n:] + byy[n:]], 0) * -D
            return [lf, tf.reduce_mean(wb**2), tf.reduce_mean(m**2)]

    @tf.function(jit_compile=jit)
    def step():
        with tf.GradientTape() as tape:
            terms = losses()
            total = tf.add_n(terms)
        grads = tape.gradient(total, model.trainable_variables)
        opt.apply(grads, model.trainable_variables)
        return total

    return _rate(step, steps, warmup)


# -- the ceiling: a step with no derivatives at all -------------------------------------------
def floor_case(problem: str, steps: int, warmup: int):
    """A training step with the plain cases' network and as many points that computes only the
    value ``u`` (no derivative with respect to the inputs): the loss is the mean square of ``u``
    on the interior and boundary points, then its gradient and an Adam update, compiled with
    XLA. Every PINN step does at least this work, so (this rate) / (plain rate) bounds the
    speed-up over the plain nested-tape step that *any* way of computing the derivatives can
    reach. (Where the points lie does not change the cost, so one box serves every problem.)"""
    import tensorflow as tf

    model, opt, gen = _plain_parts()

    @tf.function(jit_compile=True)
    def step():
        inner = gen.uniform([N_INTERIOR, 2], -1.0, 1.0)
        edge = gen.uniform([N_BOUNDARY, 2], -1.0, 1.0)
        with tf.GradientTape() as tape:
            total = tf.reduce_mean(model(inner) ** 2) + tf.reduce_mean(model(edge) ** 2)
        grads = tape.gradient(total, model.trainable_variables)
        opt.apply(grads, model.trainable_variables)
        return total

    return _rate(step, steps, warmup)


# -- DeepXDE (TensorFlow 2 backend) on the same problem --------------------------------------
def deepxde_case(problem: str, steps: int, warmup: int):
    os.environ.setdefault("DDE_BACKEND", "tensorflow")
    try:
        import deepxde as dde
    except ImportError:
        return {"skipped": "DeepXDE not installed (pip install -e '.[bench]')"}
    import numpy as np

    if problem != "helmholtz":
        return {"skipped": "only Helmholtz is implemented for DeepXDE"}
    dde.config.set_random_seed(0)
    pi = np.pi

    def pde(x, u):
        lap = dde.grad.hessian(u, x, i=0, j=0) + dde.grad.hessian(u, x, i=1, j=1)
        q = (
            (1.0 - 17 * pi**2)
            * dde.backend.tf.sin(pi * x[:, 0:1])
            * dde.backend.tf.sin(4 * pi * x[:, 1:2])
        )
        return lap + u - q

    geom = dde.geometry.Rectangle([-1, -1], [1, 1])
    bc = dde.icbc.DirichletBC(geom, lambda x: 0.0, lambda x, on: on)
    data = dde.data.PDE(geom, pde, bc, num_domain=N_INTERIOR, num_boundary=N_BOUNDARY)
    net = dde.nn.FNN([2] + [WIDTH] * LAYERS + [1], "tanh", "Glorot normal")
    model = dde.Model(data, net)
    model.compile("adam", lr=1e-3)
    # Fixed points (DeepXDE's default): resampling every step through its Python callback
    # would make it slower still, so this is its best case.
    model.train(iterations=warmup, display_every=10**9, verbose=0)
    t0 = clock()
    model.train(iterations=steps, display_every=10**9, verbose=0)
    return steps / (clock() - t0)


CASES = {
    "pinnlib": pinnlib_case,
    "pinnlib-jets": lambda p, s, w: pinnlib_case(p, s, w, jets=True),
    "pinnlib-tape": lambda p, s, w: pinnlib_case(p, s, w, mode="tape"),
    "train": train_case,
    "pair": pinnlib_pair,
    "together": pinnlib_together,
    "plain": plain_case,
    "plain-xla": lambda p, s, w: plain_case(p, s, w, jit=True),
    "deepxde": deepxde_case,
    "floor": floor_case,
}


def _peak_memory() -> dict:
    """Peak resident set size of this process and, with a GPU, TensorFlow's peak allocation."""
    out = {"peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    out["gpu_peak_mb"] = None
    if "tensorflow" in sys.modules:
        import tensorflow as tf

        if tf.config.list_physical_devices("GPU"):
            peak = tf.config.experimental.get_memory_info("GPU:0")["peak"]
            out["gpu_peak_mb"] = round(peak / 2**20, 1)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("case", choices=list(CASES))
    parser.add_argument("problem", choices=PROBLEMS)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--cpu-time", action="store_true", help="one thread, CPU seconds")
    args = parser.parse_args(argv)
    if args.cpu_time:
        use_cpu_time()
    if args.case == "pinnlib-jets" and args.problem != "kirchhoff":
        parser.error("pinnlib-jets is the Kirchhoff plate's previous derivative path")
    result = CASES[args.case](args.problem, args.steps, args.warmup)
    print(json.dumps({"result": result, **_peak_memory()}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
