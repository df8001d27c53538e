"""The long-budget study: every problem x method x seed, resumable, with provenance.

The book's central question (does adaptive balancing, ReLoBRaLo above all, beat the
alternatives, and by how much?) needs runs as long as the papers' (Wang et al. 2021: 40 000
Adam steps on Helmholtz), several seeds, and every method trained alike. Such a grid takes
hours on a CPU, so it runs outside the notebooks, from one configuration file
(``results/study/config.json``)::

    python -m pinnlib.study                 # the whole grid (make study)
    python -m pinnlib.study --status        # what is done, what is left
    python -m pinnlib.study --problem helmholtz --jobs 2

Each finished run writes ``<out>/<problem>/<method>/seed<k>.npz`` (its :class:`History`) and
``seed<k>.json`` (its provenance: pinnlib version, git commit, TensorFlow version, device,
steps, points, seconds, date, and the run's full configuration), and ``<out>/manifest.json``
lists every finished run. A finished run is never redone; an unfinished one resumes from its
newest checkpoint (``<out>/.checkpoints``), so the study can be stopped and continued across
days. Results are only written by complete runs of the configured length.

The *best fixed weights* are chosen before the study, on seeds the study does not use: every
candidate weight vector of the configuration trains on the tuning seeds for a fraction of the
budget, and the candidate with the lowest median tail error (:func:`pinnlib.stats.tail_error`)
becomes the ``fixed`` method's weights (``<out>/<problem>/fixed-tuning/choice.json``).

``--budget smoke`` runs the same code at a tiny budget (``make study-smoke``, part of
``make test``). The chapter "Comparing the schemes" loads the stored results with
:func:`load`.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "Run",
    "load_config",
    "plan",
    "run_one",
    "run_study",
    "load",
    "find_results",
    "write_manifest",
]

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "results" / "study" / "config.json"
DEFAULT_OUT = ROOT / "results" / "study"
BALANCERS = ("Sum", "Fixed", "SoftAdapt", "LRAnnealing", "GradNorm", "ReLoBRaLo")
PDES = ("Helmholtz", "Kirchhoff", "Burgers", "Poisson1D")


# -- configuration ---------------------------------------------------------------------------
def load_config(path: str | Path = DEFAULT_CONFIG, budget: str = "full") -> dict:
    """The study configuration, with the ``smoke`` overrides applied for ``budget="smoke"``."""
    if budget not in ("full", "smoke"):
        raise ValueError(f"budget must be 'full' or 'smoke', got {budget!r}")
    config = json.loads(Path(path).read_text())
    for key in ("problems", "methods", "seeds"):
        if key not in config:
            raise ValueError(f"{path}: the study configuration needs a {key!r} entry")
    for name, problem in config["problems"].items():
        if problem.get("pde") not in PDES:
            raise ValueError(f"{path}: problem {name!r} has pde {problem.get('pde')!r}; use {PDES}")
    for name, method in config["methods"].items():
        if method.get("balancer") not in BALANCERS:
            raise ValueError(
                f"{path}: method {name!r} has balancer {method.get('balancer')!r}; use {BALANCERS}"
            )
    if budget == "smoke":
        smoke = config.get("smoke", {})
        config = json.loads(json.dumps(config))  # a deep copy
        config["seeds"] = smoke.get("seeds", config["seeds"][:1])
        config.setdefault("tuning", {})["seeds"] = smoke.get("tuning_seeds", [100])
        for problem in config["problems"].values():
            for key in ("steps", "n_interior", "n_boundary", "eval_every", "eval_points"):
                if key in smoke:
                    problem[key] = smoke[key]
            if "network" in problem and "network" in smoke:
                problem["network"] = smoke["network"]
        for key in ("checkpoint_every", "network", "jit_compile"):
            if key in smoke:
                config[key] = smoke[key]
    config["budget"] = budget
    return config


@dataclass(frozen=True)
class Run:
    """One cell of the grid: a problem, a method (or a fixed-weight candidate) and a seed."""

    problem: str
    method: str
    seed: int
    weights: tuple[float, ...] | None = None  # for fixed-weight tuning candidates
    tuning: bool = False

    @property
    def name(self) -> str:
        if self.tuning:
            tag = "-".join(f"{w:g}" for w in self.weights)
            return f"{self.problem}/fixed-tuning/w{tag}-seed{self.seed}"
        return f"{self.problem}/{self.method}/seed{self.seed}"


def plan(config: dict, problems=None, methods=None, seeds=None) -> list[Run]:
    """Every run of the study, tuning runs first, then seed by seed (so that a partly finished
    study has every method at its first seeds)."""
    runs = []
    for problem in config["problems"]:
        if problems and problem not in problems:
            continue
        tuning = config.get("tuning", {})
        chosen = [m for m in config["methods"] if not methods or m in methods]
        if any(config["methods"][m]["balancer"] == "Fixed" for m in chosen):
            for weights in tuning.get("candidates", {}).get(problem, []):
                for seed in tuning.get("seeds", []):
                    runs.append(Run(problem, "fixed", seed, tuple(map(float, weights)), True))
        for seed in config["seeds"]:
            if seeds and seed not in seeds:
                continue
            for method, options in config["methods"].items():
                only = options.get("problems")  # a method may run on some problems only
                if (not methods or method in methods) and (not only or problem in only):
                    runs.append(Run(problem, method, seed))
    return runs


def _spec(config: dict, run: Run, weights=None) -> dict:
    """The complete, JSON-able description of one run (hashed into its provenance)."""
    problem = dict(config["problems"][run.problem])
    steps = problem["steps"]
    if run.tuning:
        fraction = config.get("tuning", {}).get("steps_fraction", 0.25)
        steps = max(1, int(round(steps * fraction)))
    method = {"balancer": "Fixed"} if run.tuning else dict(config["methods"][run.method])
    if method["balancer"] == "Fixed":
        method["weights"] = list(run.weights if run.tuning else weights)
    # A problem may name its own network, a method its own learning rate (or schedule).
    default_network = config.get("network", {"layers": 4, "width": 50, "activation": "tanh"})
    network = problem.pop("network", default_network)
    learning_rate = method.pop("learning_rate", config.get("learning_rate", 1e-3))
    method.pop("problems", None)  # where the method runs, not how
    return {
        "problem": run.problem,
        "method": run.method,
        "seed": run.seed,
        "pde": problem,
        "balancer": method,
        "network": network,
        "learning_rate": learning_rate,
        "steps": steps,
        "eval_every": problem.get("eval_every", max(steps // 20, 1)),
        "eval_points": problem.get("eval_points", 128),
        "tuning": run.tuning,
        "budget": config["budget"],
    }


# -- one run ---------------------------------------------------------------------------------
def _build(spec: dict):
    import pinnlib

    p = spec["pde"]
    pde = getattr(pinnlib, p["pde"])(**p.get("options", {}))
    net = spec["network"]
    input_range = (pde.lower, pde.upper) if p.get("scale_inputs", False) else None
    standardize = None
    if net.get("standardize_inputs"):  # Wang et al.: mean and std of 1e5 uniform samples
        rng = np.random.default_rng(spec["seed"])
        samples = rng.uniform(pde.lower, pde.upper, (int(net["standardize_inputs"]), pde.dims))
        standardize = (samples.mean(axis=0), samples.std(axis=0))
    model = pinnlib.mlp(
        pde.dims,
        net["layers"],
        net["width"],
        activation=net.get("activation", "tanh"),
        seed=spec["seed"],
        input_range=input_range,
        input_standardize=standardize,
    )
    options = {k: v for k, v in spec["balancer"].items() if k != "balancer"}
    kind = spec["balancer"]["balancer"]
    options = first_edition_options(kind, options)
    if kind == "Fixed":
        balancer = pinnlib.Fixed(options.pop("weights"))
    else:
        if kind == "ReLoBRaLo":
            options.setdefault("seed", spec["seed"])
        balancer = getattr(pinnlib, kind)(pde.num_terms, **options)
    return pde, model, balancer


def learning_rate_of(value):
    """A float, or the Keras schedule a configuration's ``learning_rate`` dictionary describes:
    ``{"schedule": "ExponentialDecay", "initial_learning_rate": 1e-3, "decay_steps": 1000,
    "decay_rate": 0.9}`` is Wang et al.'s ``1e-3 * 0.9 ** (step / 1000)``."""
    import keras

    if not isinstance(value, dict):
        return float(value)
    options = dict(value)
    name = options.pop("schedule", None)
    known = ("ExponentialDecay", "PiecewiseConstantDecay", "CosineDecay", "InverseTimeDecay")
    if name not in known:
        raise ValueError(f"learning_rate schedule must be one of {known}, got {name!r}")
    return getattr(keras.optimizers.schedules, name)(**options)


#: Constructor defaults of pinnlib 0.2.0 that changed since, by balancer: the stored first
#: edition of the study (``results/study``, pinnlib 0.2.0) names its methods' arguments against
#: those defaults, so a method that does not name the argument gets the old value and builds
#: what ran. LRAnnealing's default became the published Algorithm 2.1 (0.2.0's ``weighted=True``;
#: the arm ``lra`` ran ``weighted=False``); GradNorm's became the paper's Adam-trained weights
#: (the arm ``gradnorm`` ran plain gradient descent, ``update="sgd"``). A new study names
#: ``form`` / ``update`` explicitly.
FIRST_EDITION_DEFAULTS = {
    "LRAnnealing": ({"weighted", "form"}, {"weighted": False}),
    "GradNorm": ({"update"}, {"update": "sgd"}),
}


def first_edition_options(kind: str, options: dict) -> dict:
    """``options`` with pinnlib 0.2.0's default filled in where the method leaves it unnamed
    (see :data:`FIRST_EDITION_DEFAULTS`)."""
    keys, old = FIRST_EDITION_DEFAULTS.get(kind, (set(), {}))
    if keys & set(options):
        return dict(options)
    return {**old, **options}


def provenance(spec: dict, history, seconds: float) -> dict:
    """Who, what and where of one finished run."""
    import keras
    import tensorflow as tf

    import pinnlib

    return {
        "run": f"{spec['problem']}/{spec['method']}/seed{spec['seed']}",
        "pinnlib": pinnlib.__version__,
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--", "pinnlib")),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "device": _device(),
        "steps": int(history.info.get("steps", 0)),
        "n_interior": int(history.info.get("n_interior", 0)),
        "n_boundary": int(history.info.get("n_boundary", 0)),
        "seconds": round(float(history.info.get("seconds", seconds)), 3),
        "wall_seconds": round(seconds, 3),
        "steps_per_second": history.info.get("steps_per_second"),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "spec": spec,
        "spec_sha256": _sha(spec),
    }


def run_one(config: dict, run: Run, out: Path, progress: bool = False) -> dict:
    """Train one run (resuming from its checkpoint) and write its ``.npz`` and ``.json``."""
    import pinnlib

    from . import stats

    weights = None
    if run.method == "fixed" and not run.tuning:
        weights = choose_fixed(config, run.problem, out)["weights"]
    spec = _spec(config, run, weights)
    target = out / f"{run.name}.json"
    if target.exists():
        done = json.loads(target.read_text())
        if done["spec_sha256"] != _sha(spec):
            raise ValueError(
                f"{target} was made with another configuration than {run.name} has now; "
                "move it away to redo the run"
            )
        return done
    pde, model, balancer = _build(spec)
    learning_rate = learning_rate_of(spec["learning_rate"])
    t0 = time.perf_counter()
    history = pinnlib.train(
        model,
        pde,
        balancer,
        steps=spec["steps"],
        n_interior=spec["pde"]["n_interior"],
        n_boundary=spec["pde"]["n_boundary"],
        learning_rate=learning_rate,
        seed=spec["seed"],
        eval_every=spec["eval_every"],
        eval_points=spec["eval_points"],
        progress=progress,
        jit_compile=config.get("jit_compile", True),
        checkpoint_dir=out / ".checkpoints" / run.name,
        checkpoint_every=config.get("checkpoint_every", 2000),
    )
    seconds = time.perf_counter() - t0
    if history.info.get("steps") != spec["steps"]:
        raise RuntimeError(f"{run.name} stopped at step {history.info.get('steps')}")
    grid, _ = pde.grid(spec["eval_points"])
    exact = pde.exact(grid).reshape(-1)
    pred = pinnlib.metrics.predict(model, grid).reshape(-1)
    record = provenance(spec, history, seconds)
    record["final_rel_l2"] = float(history.rel_l2[-1])
    record["tail_rel_l2"] = stats.tail_error(history)
    record["prediction_norm"] = float(np.linalg.norm(pred) / np.linalg.norm(exact))
    target.parent.mkdir(parents=True, exist_ok=True)
    record["history_stride"] = stride = int(config.get("history_stride", 1))
    thin(history, stride).save(out / f"{run.name}.npz")
    _write_json(target, record)  # last: a .json means the run is complete
    shutil.rmtree(out / ".checkpoints" / run.name, ignore_errors=True)
    return record


def thin(history, stride: int):
    """The history with every ``stride``-th training step (all evaluations), in float32.

    A 40 000-step run records 40 000 rows of losses and weights; the study keeps every tenth
    (``history_stride`` in the configuration) so that its stored results stay a few MB.
    """
    if stride < 1:
        raise ValueError(f"history_stride must be an integer >= 1, got {stride}")
    keep = slice(None, None, stride)
    out = type(history)(history.term_names, info=dict(history.info, history_stride=stride))
    for key in ("step", "losses", "lambdas", "total"):
        value = np.asarray(getattr(history, key))[keep]
        setattr(out, key, value if key == "step" else value.astype(np.float32))
    for key in ("eval_step", "rel_l2", "mse", "time", "learning_rate"):
        setattr(out, key, np.asarray(getattr(history, key)))
    out.phases = [dict(p) for p in history.phases]
    return out


def choose_fixed(config: dict, problem: str, out: Path) -> dict:
    """The best fixed weights of ``problem`` from its tuning runs (trained when missing)."""
    choice = out / problem / "fixed-tuning" / "choice.json"
    tuning = [r for r in plan(config, problems=[problem]) if r.tuning]
    if not tuning:
        raise ValueError(f"no tuning candidates configured for {problem!r}")
    records = [run_one(config, r, out) for r in tuning]
    scores = {}
    for r, rec in zip(tuning, records):
        scores.setdefault(r.weights, []).append(rec["tail_rel_l2"])
    medians = {w: float(np.median(v)) for w, v in scores.items()}
    best = min(medians, key=medians.get)
    result = {
        "problem": problem,
        "weights": list(best),
        "median_tail_rel_l2": {json.dumps(list(w)): m for w, m in medians.items()},
        "seeds": config["tuning"]["seeds"],
        "runs": [r.name for r in tuning],
    }
    if not choice.exists() or json.loads(choice.read_text()) != result:
        _write_json(choice, result)
    return result


# -- the grid --------------------------------------------------------------------------------
def run_study(
    config: dict,
    out: str | Path = DEFAULT_OUT,
    problems=None,
    methods=None,
    seeds=None,
    shard: tuple[int, int] = (0, 1),
    progress: bool = False,
    phase: str | None = None,
) -> list[dict]:
    """Run every missing run of the plan (only those of ``shard = (k, n)``: every n-th;
    ``phase="tuning"`` or ``"main"``: only the fixed-weight tuning runs or only the others)."""
    out = Path(out)
    runs = plan(config, problems, methods, seeds)
    if phase is not None:
        runs = [r for r in runs if r.tuning == (phase == "tuning")]
    k, n = shard
    mine = [r for i, r in enumerate(runs) if i % n == k]
    records = []
    for i, run in enumerate(mine):
        state = "done" if (out / f"{run.name}.json").exists() else "running"
        print(f"[{k}/{n}] {i + 1}/{len(mine)} {run.name}: {state}", flush=True)
        record = run_one(config, run, out, progress=progress)
        if state == "running":
            print(
                f"[{k}/{n}] {run.name}: rel L2 {record['final_rel_l2']:.3g} "
                f"(tail {record['tail_rel_l2']:.3g}) in {record['seconds']:.0f} s",
                flush=True,
            )
        records.append(record)
        write_manifest(config, out)
    return records


def write_manifest(config: dict, out: str | Path) -> dict:
    """``<out>/manifest.json``: every finished run of the plan found on disk."""
    out = Path(out)
    runs = []
    for run in plan(config):
        path = out / f"{run.name}.json"
        if path.exists():
            rec = json.loads(path.read_text())
            runs.append(
                {
                    "run": run.name,
                    "problem": run.problem,
                    "method": run.method,
                    "seed": run.seed,
                    "tuning": run.tuning,
                    "npz": f"{run.name}.npz",
                    "json": f"{run.name}.json",
                    "steps": rec["steps"],
                    "pinnlib": rec["pinnlib"],
                    "final_rel_l2": rec["final_rel_l2"],
                }
            )
    manifest = {
        "study": config.get("name", "study"),
        "budget": config["budget"],
        "planned": len(plan(config)),
        "finished": len(runs),
        "runs": runs,
    }
    _write_json(out / "manifest.json", manifest)
    return manifest


def find_results(name: str = "study") -> Path | None:
    """A stored results folder ``results/<name>``, or None: for the study ``$PINNLIB_STUDY``
    first, then ``results/<name>`` next to the current folder or above it (a chapter runs from
    ``book/``), then a clone ``relobralo-book/`` in the current folder (Colab)."""
    candidates = [Path(p) for p in [os.environ.get("PINNLIB_STUDY")] if p and name == "study"]
    candidates += [Path("results") / name, Path("../results") / name]
    candidates += [Path("relobralo-book/results") / name, ROOT / "results" / name]
    return next((p for p in candidates if (p / "manifest.json").exists()), None)


def load(out: str | Path = DEFAULT_OUT, tuning: bool = False) -> dict:
    """``{(problem, method, seed): (History, provenance)}`` for every run in the manifest."""
    from pinnlib import History

    out = Path(out)
    manifest = json.loads((out / "manifest.json").read_text())
    results = {}
    for entry in manifest["runs"]:
        if entry["tuning"] != tuning:
            continue
        key = (entry["problem"], entry["method"], entry["seed"])
        if tuning:
            key = (entry["problem"], entry["run"].split("/")[-1], entry["seed"])
        record = json.loads((out / entry["json"]).read_text())
        results[key] = (History.load(out / entry["npz"]), record)
    return results


# -- helpers ---------------------------------------------------------------------------------
def _sha(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)  # atomic: a reader never sees half a file


def _git(*args) -> str | None:
    try:
        result = subprocess.run(
            ["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def _device() -> str:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        names = [
            tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus
        ]
        return "GPU: " + ", ".join(names)
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    threads = tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()
    return f"CPU: {cpu}, {threads} of {os.cpu_count()} threads"


def status(config: dict, out: Path) -> str:
    """One line per problem and method: finished seeds out of planned."""
    lines = []
    for problem in config["problems"]:
        for run_list in (plan(config, problems=[problem]),):
            groups: dict[str, list[bool]] = {}
            for r in run_list:
                label = "fixed-tuning" if r.tuning else r.method
                groups.setdefault(label, []).append((out / f"{r.name}.json").exists())
            for label, done in groups.items():
                lines.append(f"{problem:10s} {label:14s} {sum(done)}/{len(done)}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pinnlib.study", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--config", default=str(DEFAULT_CONFIG))
    parser.add_argument("--out", default=None, help="results folder (default: results/study)")
    parser.add_argument("--budget", default="full", choices=("full", "smoke"))
    parser.add_argument("--problem", action="append", help="only this problem (repeatable)")
    parser.add_argument("--method", action="append", help="only this method (repeatable)")
    parser.add_argument("--seed", action="append", type=int, help="only this seed (repeatable)")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (one per device)")
    parser.add_argument("--shard", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--phase", default=None, choices=("tuning", "main"), help=argparse.SUPPRESS)
    parser.add_argument("--status", action="store_true", help="print what is done and exit")
    parser.add_argument("--progress", action="store_true", help="a progress bar per run")
    args = parser.parse_args(argv)
    config = load_config(args.config, args.budget)
    if args.out is None and args.budget == "smoke":
        parser.error("--budget smoke needs --out (smoke results never go into results/study)")
    out = Path(args.out or DEFAULT_OUT)
    if args.status:
        print(status(config, out))
        return 0
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    filters = dict(problems=args.problem, methods=args.method, seeds=args.seed)
    if args.shard:
        k, n = (int(v) for v in args.shard.split("/"))
        run_study(config, out, shard=(k, n), progress=args.progress, phase=args.phase, **filters)
        return 0
    if args.jobs == 1:
        run_study(config, out, progress=args.progress, **filters)
        return 0
    return _launch(args, config, out, argv if argv is not None else sys.argv[1:])


def _launch(args, config, out, argv) -> int:
    """``--jobs n``: n worker processes, each on its own GPU (if any) or share of CPU threads.

    Fixed weights are chosen first (their tuning runs are spread over the workers too), so that
    no two workers train the same tuning run.
    """
    import tensorflow as tf

    gpus = len(tf.config.list_physical_devices("GPU"))
    base, skip = [], False
    for a in argv:  # the same arguments, less --jobs
        if skip or a.startswith("--jobs"):
            skip = a == "--jobs"
            continue
        base.append(a)
    for phase in ("tuning", "main"):
        workers = []
        for k in range(args.jobs):
            env = _worker_env(k, args.jobs, gpus, os.environ, os.cpu_count() or 1)
            shard = ["--shard", f"{k}/{args.jobs}", "--phase", phase]
            cmd = [sys.executable, "-m", "pinnlib.study", *base, *shard]
            workers.append(subprocess.Popen(cmd, env=env))
        codes = [w.wait() for w in workers]
        if max(codes):
            return max(codes)
    write_manifest(config, out)
    return 0


def _worker_env(k: int, jobs: int, gpus: int, environ, cpus: int) -> dict[str, str]:
    """The environment of worker ``k`` of ``jobs``: its own GPU (round robin; workers sharing a
    GPU let their memory grow instead of each reserving all of it), or without GPUs an equal
    share of the CPU threads. One run trains in one process on one device at a time; training
    one run on several devices is ``pinnlib.train(..., strategy=...)`` (appendix "Scaling
    out")."""
    env = dict(environ)
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = str(k % gpus)
        if jobs > gpus:
            env["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"
    else:
        env["TF_NUM_INTRAOP_THREADS"] = str(max(1, cpus // jobs))
        env["TF_NUM_INTEROP_THREADS"] = "1"
    return env


if __name__ == "__main__":
    sys.exit(main())
