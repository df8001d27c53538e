"""What the stored study says: summaries, numbers for the prose, and the figures.

:mod:`pinnlib.study` trains the grid and stores one History and one provenance record per run;
this module turns those files into what the chapter "Comparing the schemes" shows. Every number
the chapter glues comes from :func:`numbers`, and a test recomputes it from the stored files, so
the prose and the results cannot drift apart.

Each run is scored by its tail error (the geometric mean of its relative L2 error over the last
10 % of training, :func:`pinnlib.stats.tail_error`); over seeds the median with the smallest
and largest value is reported, and runs whose output collapsed to zero are counted separately
(:func:`pinnlib.stats.is_collapsed`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .stats import Summary, is_collapsed, ratio, summarize, tail_error

__all__ = [
    "PUBLISHED",
    "summaries",
    "numbers",
    "table",
    "plot_study",
    "tuning_summaries",
    "tuning_table",
    "reproduction",
    "reproduction_table",
]

# Published figures the study stands beside (relative L2 error), with their sources.
PUBLISHED = {
    "wang_helmholtz_plain": 1.81e-1,  # Wang, Teng & Perdikaris 2021, 4 x 50 tanh, 40 000 steps
    "wang_helmholtz_annealing": 1.27e-2,  # the same, with learning-rate annealing
    "article_helmholtz_reduction": 0.65,  # Bischof & Kraus 2021: ReLoBRaLo -65 % vs unweighted
    "article_kirchhoff_factor": 10.0,  # Bischof & Kraus 2021: "more than an order of magnitude"
}


def summaries(results: dict) -> dict[tuple[str, str], Summary]:
    """``{(problem, method): Summary of tail errors over seeds}`` for the loaded results
    (:func:`pinnlib.study.load`)."""
    grouped: dict[tuple[str, str], list] = {}
    for (problem, method, _seed), (history, record) in sorted(results.items()):
        grouped.setdefault((problem, method), []).append((history, record))
    return {
        key: summarize(
            [tail_error(h) for h, _ in runs],
            [is_collapsed(r.get("prediction_norm", float("nan"))) for _, r in runs],
        )
        for key, runs in grouped.items()
    }


def _methods(summary, problem):
    return [m for (p, m) in summary if p == problem]


def numbers(results: dict) -> dict[str, float | int | str]:
    """Every number the chapter glues, by name (``study_<what>_<problem>[_<method>]``)."""
    summary = summaries(results)
    problems = sorted({p for p, _ in summary})
    out: dict[str, float | int | str] = {}
    records = [r for _, r in results.values()]
    out["study_runs"] = len(records)
    out["study_cpu_hours"] = sum(r["seconds"] for r in records) / 3600
    out["study_pinnlib"] = ", ".join(sorted({r["pinnlib"] for r in records}))
    out["study_commits"] = ", ".join(sorted({r["git_commit"][:7] for r in records}))
    for problem in problems:
        methods = _methods(summary, problem)
        steps = {r["steps"] for (p, _, _), (_, r) in results.items() if p == problem}
        seeds = {s for (p, _, s) in results if p == problem}
        out[f"study_steps_{problem}"] = max(steps)
        out[f"study_seeds_{problem}"] = len(seeds)
        for method in methods:
            s = summary[problem, method]
            tag = f"{problem}_{method.replace('-', '_')}"
            out[f"study_median_{tag}"] = s.median
            out[f"study_low_{tag}"] = s.low
            out[f"study_high_{tag}"] = s.high
            out[f"study_collapsed_{tag}"] = s.collapsed
            if "sum" in methods:
                out[f"study_ratio_{tag}"] = ratio(s, summary[problem, "sum"])
        order = sorted(methods, key=lambda m: summary[problem, m].median)
        out[f"study_best_{problem}"] = order[0]
        out[f"study_methods_{problem}"] = len(methods)
        if "relobralo" in methods:
            out[f"study_rank_{problem}_relobralo"] = order.index("relobralo") + 1
            if "sum" in methods:
                out[f"study_reduction_{problem}_relobralo"] = 1 - ratio(
                    summary[problem, "relobralo"], summary[problem, "sum"]
                )
        out[f"study_verdict_{problem}"] = _verdict(summary, problem, order, len(seeds))
    return out


# What the ReLoBRaLo article claims, as the largest ratio to the unweighted error that meets it.
CLAIMS = {
    "helmholtz": (1 - PUBLISHED["article_helmholtz_reduction"], "about 65 % lower error"),
    "kirchhoff": (1 / PUBLISHED["article_kirchhoff_factor"], "more than an order of magnitude"),
}


def _verdict(summary, problem, order, seeds) -> str:
    """One sentence on ReLoBRaLo against the unweighted sum (and the article's claim)."""
    if "relobralo" not in order or "sum" not in order:
        return "has no stored ReLoBRaLo and Sum runs to compare yet"
    r = ratio(summary[problem, "relobralo"], summary[problem, "sum"])
    text = (
        f"gives ReLoBRaLo a median error {r:.2f} times the unweighted sum's over {seeds} seeds, "
        f"rank {order.index('relobralo') + 1} of the {len(order)} methods stored"
    )
    if problem in CLAIMS:
        limit, claim = CLAIMS[problem]
        held = "holds" if r <= limit else "does not hold"
        text += f"; the article's claim of {claim} {held} at this budget"
    return text


def table(
    results: dict,
    labels: dict[str, str] | None = None,
    problems: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
) -> str:
    """The summary as a Markdown table: median [min, max] tail error per problem and method,
    the best median of each problem in bold.

    Args:
        results: the loaded study (:func:`pinnlib.study.load`).
        labels: display names of methods and problems (a problem without one is capitalised).
        problems, methods: the columns and rows, in order (e.g. the study configuration's
            ``config["problems"]`` and ``config["methods"]``); ``None``: every one stored,
            sorted. Cells without stored runs say "not run" (a study still running, or a
            misspelt name: it shows, it is not dropped).
    """
    summary = summaries(results)
    labels = labels or {}
    problems = _order("problems", problems, [p for p, _ in summary])
    methods = _order("methods", methods, [m for _, m in summary])
    head = "| method | " + " | ".join(labels.get(p, p.capitalize()) for p in problems) + " |"
    lines = [head, "|---|" + "---|" * len(problems)]
    for method in methods:
        cells = []
        for problem in problems:
            s = summary.get((problem, method))
            if s is None:
                cells.append("not run")
                continue
            text = str(s)
            best = min(_methods(summary, problem), key=lambda m: summary[problem, m].median)
            cells.append(f"**{text}**" if method == best else text)
        lines.append(f"| {labels.get(method, method)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _order(name: str, wanted: Sequence[str] | None, stored: list[str]) -> list[str]:
    """``wanted`` as given, or the stored names sorted; a single string is a TypeError (it
    would otherwise be read letter by letter)."""
    if wanted is None:
        return sorted(set(stored))
    if isinstance(wanted, str) or not all(isinstance(w, str) for w in wanted):
        raise TypeError(f"{name} must be a list of names, e.g. [{wanted!r}], got {wanted!r}")
    return list(wanted)


def plot_study(results: dict, problem: str, ax=None, against: str = "step", labels=None):
    """Median relative L2 error over seeds against step (or wall time), min-max band shaded."""
    import matplotlib.pyplot as plt

    if against not in ("step", "time"):
        raise ValueError(f"against must be 'step' or 'time', got {against!r}")
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4))
    labels = labels or {}
    methods = list(dict.fromkeys(m for (p, m, _) in results if p == problem))
    if not methods:
        raise ValueError(f"no stored results for problem {problem!r}")
    for method in methods:
        runs = [h for (p, m, _), (h, _) in sorted(results.items()) if p == problem and m == method]
        errors = np.array([h.rel_l2 for h in runs])
        x = runs[0].eval_step if against == "step" else np.median([h.time for h in runs], axis=0)
        (line,) = ax.semilogy(x, np.median(errors, axis=0), label=labels.get(method, method))
        ax.fill_between(
            x, errors.min(axis=0), errors.max(axis=0), color=line.get_color(), alpha=0.15
        )
    ax.set(
        xlabel="training step" if against == "step" else "training wall time (s)",
        ylabel="relative L2 error",
        title=f"{problem}: median of {len(runs)} seeds (band: min to max)",
    )
    return ax


# -- the fixed weights' tuning ---------------------------------------------------------------
def tuning_summaries(tuning_results: dict) -> dict[str, dict[tuple[float, ...], Summary]]:
    """``{problem: {weights: Summary of tail errors over the tuning seeds}}``.

    ``tuning_results`` is ``pinnlib.study.load(out, tuning=True)``: the candidate weight vectors
    each trained on the tuning seeds (not the study's) for a fraction of the budget. The study
    picked, per problem, the candidate with the lowest median (its ``choice.json``); recomputing
    it here from the stored runs lets the chapter show the whole sweep, not only its winner.
    """
    grouped: dict[str, dict[tuple[float, ...], list]] = {}
    for (problem, _name, _seed), (history, record) in sorted(tuning_results.items()):
        weights = tuple(float(w) for w in record["spec"]["balancer"]["weights"])
        grouped.setdefault(problem, {}).setdefault(weights, []).append((history, record))
    return {
        problem: {
            weights: summarize(
                [tail_error(h) for h, _ in runs],
                [is_collapsed(r.get("prediction_norm", float("nan"))) for _, r in runs],
            )
            for weights, runs in candidates.items()
        }
        for problem, candidates in grouped.items()
    }


def tuning_table(tuning_results: dict, term_names: dict[str, tuple[str, ...]] | None = None) -> str:
    """The tuning sweep as a Markdown table: per problem (with the steps each candidate trained)
    and candidate weight vector, the tail error's median [min, max] over the tuning seeds; the
    pick of each problem in bold."""
    summary = tuning_summaries(tuning_results)
    steps = {p: r["steps"] for (p, _, _), (_, r) in tuning_results.items()}
    lines = ["| problem | weights | tail error: median [best, worst] |", "|---|---|---|"]
    for problem, candidates in summary.items():
        best = min(candidates, key=lambda w: candidates[w].median)
        names = (term_names or {}).get(problem)
        for weights, s in candidates.items():
            w = ", ".join(f"{v:g}" for v in weights)
            if names:
                w = ", ".join(f"{n} {v:g}" for n, v in zip(names, weights))
            text = f"**{s}**" if weights == best else str(s)
            lines.append(f"| {problem} ({steps[problem]} steps) | {w} | {text} |")
    return "\n".join(lines)


# -- reproducing a published table ----------------------------------------------------------
#: The rule by which a reproduction "lands inside the published spread": our mean over seeds
#: lies within the published mean +- 2 published standard deviations (the range that holds
#: about 95 % of their trials if their errors were normal). Welch's t-test of the two means is
#: reported beside it, as a second reading, not as the rule.
REPRODUCTION_RULE = "our mean within the published mean +- 2 published standard deviations"


def reproduction(results: dict, published: dict) -> list[dict]:
    """Our final errors beside a published table, one row per (problem, method) published.

    Args:
        results: the loaded runs (:func:`pinnlib.study.load`), scored by their *final* relative
            L2 error, as a paper reports the end of training.
        published: ``{"trials": n, problem: {method: [mean, std]}}`` (a reproduction
            configuration's ``"published"`` entry; other keys are ignored).

    Returns:
        Dicts with ``problem, method, published_mean, published_std, trials, mean, std, seeds,
        inside`` (:data:`REPRODUCTION_RULE`) and ``welch_p``; ``seeds == 0`` where nothing ran.
    """
    from scipy import stats as scipy_stats

    trials = int(published.get("trials", 0))
    rows = []
    for problem, methods in published.items():
        if not isinstance(methods, dict):
            continue
        for method, (mean, std) in methods.items():
            errors = [
                float(h.rel_l2[-1])
                for (p, m, _), (h, _) in results.items()
                if (p, m) == (problem, method)
            ]
            row = {
                "problem": problem,
                "method": method,
                "published_mean": float(mean),
                "published_std": float(std),
                "trials": trials,
                "seeds": len(errors),
                "mean": float(np.mean(errors)) if errors else float("nan"),
                "std": float(np.std(errors, ddof=1)) if len(errors) > 1 else float("nan"),
            }
            row["inside"] = bool(abs(row["mean"] - mean) <= 2 * std) if errors else False
            row["welch_p"] = float("nan")
            if len(errors) > 1 and trials > 1:
                row["welch_p"] = float(
                    scipy_stats.ttest_ind_from_stats(
                        row["mean"], row["std"], len(errors), mean, std, trials, equal_var=False
                    ).pvalue
                )
            rows.append(row)
    return rows


def reproduction_table(rows: list[dict], labels: dict[str, str] | None = None) -> str:
    """:func:`reproduction`'s rows as a Markdown table (mean +- std, seeds, the rule's answer)."""
    labels = labels or {}
    lines = [
        "| problem | method | published (mean ± std, trials) | pinnlib (mean ± std, seeds) "
        "| inside ±2 std | Welch p |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        ours = "not run" if not r["seeds"] else f"{r['mean']:.3g} ± {r['std']:.2g} ({r['seeds']})"
        lines.append(
            f"| {labels.get(r['problem'], r['problem'])} | {labels.get(r['method'], r['method'])} "
            f"| {r['published_mean']:.3g} ± {r['published_std']:.2g} ({r['trials']}) | {ours} "
            f"| {'yes' if r['inside'] else 'no'} | {r['welch_p']:.2g} |"
        )
    return "\n".join(lines)
