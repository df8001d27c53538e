#!/usr/bin/env python
"""Execute the book's notebooks in place at the full budget and stamp them.

Usage::

    python tools/execute_notebooks.py                      # every notebook in _toc.yml
    python tools/execute_notebooks.py book/03_helmholtz.ipynb [...]

Each notebook runs top to bottom in a fresh ``python3`` kernel whose working directory is the
notebook's folder, with ``PINNLIB_BUDGET=full`` in its environment. On success the notebook is
written back with its outputs and ``metadata.pinnlib``::

    {"budget": "full", "version": "0.1.0", "executed": "2025-01-01T12:00:00Z", "seconds": 812.3}

A notebook that fails is left untouched on disk; the others still run and the script exits 1.
The book build renders these stored outputs (it never executes notebooks), and
``tests/test_repo.py`` checks they are complete, in order and free of errors.
"""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import os
import site
import sys
import sysconfig
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
from toc_notebooks import ROOT, toc_notebooks

KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def pinnlib_version() -> str:
    """``pinnlib.__version__`` as written in pinnlib/__init__.py (the one place it is written;
    pyproject.toml reads it too), without importing pinnlib and TensorFlow."""
    source = (ROOT / "pinnlib" / "__init__.py").read_text(encoding="utf-8")
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == [
            "__version__"
        ]:
            return ast.literal_eval(node.value)
    raise RuntimeError("pinnlib/__init__.py does not set __version__")


def _machine_prefixes() -> list[tuple[str, str]]:
    """(absolute path, placeholder) pairs to scrub from text outputs, longest first.

    Warnings printed by libraries carry the file they came from, e.g.
    ``/home/me/repo/.venv/lib/python3.11/site-packages/keras/...``; such paths say nothing
    to a reader and differ on every machine.
    """
    pairs = {}
    for sp in {*site.getsitepackages(), sysconfig.get_paths()["purelib"]}:
        pairs[str(Path(sp).resolve())] = "<site-packages>"
        pairs[sp] = "<site-packages>"
    pairs[sys.prefix] = "<python>"
    pairs[str(ROOT)] = "<repo>"
    pairs[str(Path.home())] = "~"
    return sorted(((k, v) for k, v in pairs.items() if len(k) > 1), key=lambda kv: -len(kv[0]))


def scrub_paths(nb) -> int:
    """Replace machine-specific path prefixes in text outputs; return how many were replaced."""
    prefixes = _machine_prefixes()
    count = 0

    def fix(text):
        nonlocal count
        joined = "".join(text) if isinstance(text, list) else text
        for prefix, placeholder in prefixes:
            n = joined.count(prefix)
            if n:
                count += n
                joined = joined.replace(prefix, placeholder)
        return joined

    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if "text" in out:
                out["text"] = fix(out["text"])
            if "traceback" in out:
                out["traceback"] = [fix(line) for line in out["traceback"]]
            for mime, value in out.get("data", {}).items():
                if mime.startswith("text/") and isinstance(value, (str, list)):
                    out["data"][mime] = fix(value)
    return count


def execute(path: Path, timeout: int, budget: str) -> float:
    """Execute one notebook in place; return wall seconds. Raises on failure (file untouched)."""
    nb = nbformat.read(path, as_version=4)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    # Empty code cells are skipped by nbclient; clear them so execution counts stay clean.
    for cell in nb.cells:
        if cell.cell_type == "code" and not cell.source.strip():
            cell.outputs, cell.execution_count = [], None

    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=timeout,
        resources={"metadata": {"path": str(path.parent)}},  # kernel cwd = notebook folder
        record_timing=False,  # no per-cell timestamps: they only add noise to diffs
        # One stream output per cell with carriage returns applied: a progress bar is stored as
        # its final line (the build's nb_merge_streams merges streams but keeps every redraw).
        coalesce_streams=True,
    )
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start

    scrubbed = scrub_paths(nb)
    if scrubbed:
        print(f"  replaced {scrubbed} machine path(s) in outputs with placeholders")
    nb.metadata["pinnlib"] = {
        "budget": budget,
        "version": pinnlib_version(),
        "executed": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "seconds": round(seconds, 1),
    }
    nbformat.validate(nb)
    nbformat.write(nb, path)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "notebooks", nargs="*", type=Path, help="default: every notebook in _toc.yml"
    )
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell (default 3600)")
    parser.add_argument(
        "--budget",
        default="full",
        choices=["full", "smoke"],
        help="PINNLIB_BUDGET for the run (default full; the tests require full)",
    )
    args = parser.parse_args(argv)

    notebooks = args.notebooks or toc_notebooks()
    if not notebooks:
        print("No notebooks listed in _toc.yml; nothing to execute.")
        return 0
    missing = [nb for nb in notebooks if not nb.is_file()]
    if missing:
        parser.error("not found: " + ", ".join(map(str, missing)))

    os.environ["PINNLIB_BUDGET"] = args.budget  # inherited by every kernel
    # Progress bars stay on: a chapter asks for one on its long training cells, pinnlib's text
    # bar goes to stdout and redraws with carriage returns, and the stored notebook keeps only
    # its final line (coalesce_streams above), so the page says how long the run took.
    failed, total = [], 0.0
    for nb in notebooks:
        nb = nb.resolve()
        name = nb.relative_to(ROOT).as_posix() if nb.is_relative_to(ROOT) else nb.name
        print(f"{name}: executing (budget={args.budget}) ...", flush=True)
        try:
            seconds = execute(nb, args.timeout, args.budget)
        except (CellExecutionError, CellTimeoutError, DeadKernelError) as err:
            failed.append(name)
            print(f"{name}: FAILED, notebook left unchanged\n{err}", file=sys.stderr, flush=True)
            continue
        total += seconds
        print(f"{name}: {seconds:.1f} s", flush=True)

    print(f"Executed {len(notebooks) - len(failed)}/{len(notebooks)} notebook(s) in {total:.1f} s.")
    if failed:
        print("Failed: " + ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
