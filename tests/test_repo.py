"""Repository consistency checks: table of contents, repository URL, stored notebooks.

The notebook checks are parametrized over the notebooks that exist, so they simply have no cases
until the first chapter lands.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SUFFIXES = (".md", ".ipynb", ".rst")
# Absolute paths that would only exist on the machine that ran the notebook.
MACHINE_PATH = re.compile(
    r"/work/|/home/|/root/|/Users/|[A-Za-z]:\\Users\\|site-packages/|dist-packages/"
)


def _toc_entries(node):
    if isinstance(node, dict):
        for key in ("root", "file"):
            if key in node:
                yield node[key]
        for key in ("parts", "chapters", "sections"):
            for child in node.get(key) or []:
                yield from _toc_entries(child)


def _resolve(entry: str) -> Path | None:
    path = ROOT / entry
    if path.suffix in SUFFIXES:
        return path if path.is_file() else None
    for suffix in SUFFIXES:
        candidate = path.with_name(path.name + suffix)
        if candidate.is_file():
            return candidate
    return None


TOC = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
TOC_ENTRIES = list(_toc_entries(TOC))
TOC_NOTEBOOKS = [p for p in map(_resolve, TOC_ENTRIES) if p is not None and p.suffix == ".ipynb"]
ALL_NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
REPO_URL = CONFIG["repository"]["url"].rstrip("/")


def _ids(paths):
    return [p.relative_to(ROOT).as_posix() for p in paths]


def _read(path: Path):
    return nbformat.read(path, as_version=4)


# --- (a) table of contents -----------------------------------------------------------------


def test_toc_format():
    assert TOC["format"] == "jb-book"
    assert TOC_ENTRIES and TOC_ENTRIES[0] == TOC["root"]


@pytest.mark.parametrize("entry", TOC_ENTRIES)
def test_toc_entry_exists(entry):
    assert _resolve(entry) is not None, f"_toc.yml lists {entry!r}, which does not exist"


def test_toc_has_no_duplicates():
    assert len(TOC_ENTRIES) == len(set(TOC_ENTRIES))


# --- (b) one repository URL everywhere ----------------------------------------------------


def test_repository_url_in_readme():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    installs = re.findall(r"git\+(https://[^\s\"'@]+)", readme)
    assert installs, "README.md has no `pip install ... git+<url>` line"
    assert set(installs) == {REPO_URL}

    # Colab links are built from the same repository and branch as the launch buttons.
    org_repo = REPO_URL.removeprefix("https://github.com/")
    branch = CONFIG["repository"]["branch"]
    colab = re.findall(r"colab\.research\.google\.com/github/([^\s)]+?)/blob/([^/\s]+)/", readme)
    assert colab, "README.md has no Colab link"
    assert set(colab) == {(org_repo, branch)}


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=_ids(ALL_NOTEBOOKS))
def test_colab_install_cell_uses_repository_url(path):
    cells = [c for c in _read(path).cells if c.cell_type == "code" and "google.colab" in c.source]
    for cell in cells:
        assert f"git+{REPO_URL}" in cell.source, f"Colab cell does not install git+{REPO_URL}"
        others = set(re.findall(r"git\+(https://[^\s\"'@]+)", cell.source)) - {REPO_URL}
        assert not others, f"Colab cell installs from another URL: {others}"


# --- (c) every notebook: kernel and no machine paths ---------------------------------------


def _text_of_outputs(cell):
    for out in cell.get("outputs", []):
        if "text" in out:
            yield out["text"] if isinstance(out["text"], str) else "".join(out["text"])
        yield from out.get("traceback", [])
        for mime, value in out.get("data", {}).items():
            # Images are base64 and could match a path pattern by chance; skip them.
            if not mime.startswith("image/"):
                yield value if isinstance(value, str) else json.dumps(value)


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=_ids(ALL_NOTEBOOKS))
def test_notebook_kernel_and_no_machine_paths(path):
    nb = _read(path)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    for i, cell in enumerate(nb.cells):
        for text in (cell.source, *_text_of_outputs(cell)):
            match = MACHINE_PATH.search(text)
            if match:
                near = text[max(0, match.start() - 40) : match.end() + 40]
                pytest.fail(f"cell {i} contains a machine path near {near!r}")


# --- (d) notebooks in the book: stored full-budget outputs ---------------------------------


@pytest.mark.parametrize("path", TOC_NOTEBOOKS, ids=_ids(TOC_NOTEBOOKS))
def test_notebook_is_executed_at_full_budget(path):
    nb = _read(path)
    stamp = nb.metadata.get("pinnlib", {})
    assert stamp.get("budget") == "full", "run `make execute NB=...` (metadata.pinnlib.budget)"

    code = [c for c in nb.cells if c.cell_type == "code"]
    assert any(c.outputs for c in code), "no stored outputs"

    counts = []
    for i, cell in enumerate(code):
        tags = cell.metadata.get("tags", [])
        if cell.execution_count is None:
            # nbclient skips empty cells and cells tagged skip-execution.
            assert not cell.source.strip() or "skip-execution" in tags, f"code cell {i} never ran"
            continue
        counts.append(cell.execution_count)
        if "raises-exception" not in tags:
            errors = [o for o in cell.outputs if o.output_type == "error"]
            assert not errors, f"code cell {i} stored an error: {errors[0].get('ename')}"

    assert counts and counts[0] == 1, f"execution counts start at {counts[:1]}, not 1"
    assert all(a < b for a, b in zip(counts, counts[1:])), f"cells ran out of order: {counts}"
