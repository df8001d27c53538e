"""One benchmark case per process: prints a JSON line with steps per second and peak memory.

Run by ``benchmarks/run.py``; each case runs in a fresh interpreter so TensorFlow state,
thread pools and XLA caches never leak from one measurement into the next. Every case trains
the same problem the same way: a 4 x 50 tanh MLP, 1024 interior + 1024 boundary points, Adam
with learning rate 1e-3, and reports the rate of the timed steps after a warm-up (which
absorbs tracing and XLA compilation).

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


def _rate(step, steps: int, warmup: int) -> float:
    for _ in range(warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        out = step()
    _ = [o.numpy() for o in out] if isinstance(out, (list, tuple)) else out.numpy()
    return steps / (time.perf_counter() - t0)


# -- pinnlib as users get it ----------------------------------------------------------------
def pinnlib_case(problem: str, steps: int, warmup: int, balancer: str = "sum", jit: bool = True):
    import pinnlib

    pde = {"helmholtz": pinnlib.Helmholtz(), "kirchhoff": pinnlib.Kirchhoff()}[problem]
    kwargs = {"input_range": (pde.lower, pde.upper)} if problem == "kirchhoff" else {}
    model = pinnlib.mlp(2, LAYERS, WIDTH, seed=0, **kwargs)
    bal = pinnlib.ReLoBRaLo(pde.num_terms, seed=0) if balancer == "relobralo" else None
    trainer = pinnlib.Trainer(
        model, pde, bal, n_interior=N_INTERIOR, n_boundary=N_BOUNDARY, seed=0, jit_compile=jit
    )
    # Trainer.run includes evaluation on a grid; time the compiled step directly instead.
    return _rate(trainer._step_fn, steps, warmup)


def pinnlib_pair(problem: str, steps: int, warmup: int):
    """Sum and ReLoBRaLo interleaved in one process (5 blocks of ``steps`` each), so both see
    the same machine state."""
    import pinnlib

    pde = {"helmholtz": pinnlib.Helmholtz(), "kirchhoff": pinnlib.Kirchhoff()}[problem]
    fns = {}
    for name in ("sum", "relobralo"):
        model = pinnlib.mlp(2, LAYERS, WIDTH, seed=0)
        bal = pinnlib.ReLoBRaLo(pde.num_terms, seed=0) if name == "relobralo" else None
        fns[name] = pinnlib.Trainer(model, pde, bal, seed=0)._step_fn
    rates = {name: [] for name in fns}
    for _ in range(5):
        for name, fn in fns.items():
            rates[name].append(_rate(fn, steps, warmup if not rates[name] else 5))
    return {name: sorted(r)[len(r) // 2] for name, r in rates.items()}


def pinnlib_together(problem: str, steps: int, warmup: int, runs: int = 3):
    """Run-steps per second: one run with ``pinnlib.train`` against ``runs`` runs in one
    compiled step with ``pinnlib.train_together``, alternating twice in one process. Both rates
    come from the histories (compilation excluded, chunked read-back included)."""
    import pinnlib

    pde = {"helmholtz": pinnlib.Helmholtz(), "kirchhoff": pinnlib.Kirchhoff()}[problem]
    kwargs = {"input_range": (pde.lower, pde.upper)} if problem == "kirchhoff" else {}
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
    for _ in range(2):
        model = pinnlib.mlp(2, LAYERS, WIDTH, seed=0, **kwargs)
        h = pinnlib.train(model, pde, pinnlib.ReLoBRaLo(pde.num_terms, seed=0), seed=0, **common)
        rates["alone"].append(h.info["steps_per_second"])
        models = [pinnlib.mlp(2, LAYERS, WIDTH, seed=s, **kwargs) for s in range(runs)]
        balancers = [pinnlib.ReLoBRaLo(pde.num_terms, seed=s) for s in range(runs)]
        hs = pinnlib.train_together(models, pde, balancers, seeds=list(range(runs)), **common)
        rates["together"].append(runs * hs[0].info["steps_per_second"])
    return {k: max(v) for k, v in rates.items()}


# -- a plain nested-tape PINN, as one writes it from the TensorFlow docs ---------------------
def plain_case(problem: str, steps: int, warmup: int, jit: bool = False):
    import keras
    import numpy as np
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


# -- DeepXDE (TensorFlow 2 backend) on the same problem --------------------------------------
def deepxde_case(problem: str, steps: int, warmup: int):
    os.environ.setdefault("DDE_BACKEND", "tensorflow")
    import deepxde as dde
    import numpy as np

    if problem != "helmholtz":
        raise SystemExit("deepxde case: only helmholtz is implemented")
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
    t0 = time.perf_counter()
    model.train(iterations=steps, display_every=10**9, verbose=0)
    return steps / (time.perf_counter() - t0)


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "case",
        choices=["pinnlib", "pinnlib-tape", "pair", "together", "plain", "plain-xla", "deepxde"],
    )
    parser.add_argument("problem", choices=["helmholtz", "kirchhoff"])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    args = parser.parse_args(argv)
    if args.case == "pinnlib":
        result = pinnlib_case(args.problem, args.steps, args.warmup)
    elif args.case == "pinnlib-tape":
        import pinnlib.derivatives as d

        d.forward_supported = lambda *a, **k: False  # force the nested-tape path
        result = pinnlib_case(args.problem, args.steps, args.warmup)
    elif args.case == "pair":
        result = pinnlib_pair(args.problem, args.steps, args.warmup)
    elif args.case == "together":
        result = pinnlib_together(args.problem, args.steps, args.warmup)
    elif args.case == "plain":
        result = plain_case(args.problem, args.steps, args.warmup)
    elif args.case == "plain-xla":
        result = plain_case(args.problem, args.steps, args.warmup, jit=True)
    else:
        result = deepxde_case(args.problem, args.steps, args.warmup)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"result": result, "peak_mb": round(peak_mb, 1)}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
