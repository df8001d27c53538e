#!/usr/bin/env python
"""List the files of the book's table of contents (``_toc.yml``).

Run as a script it prints, one per line and relative to the repository root, the notebooks
(``.ipynb``) that ``_toc.yml`` lists, in book order. The Makefile uses it to decide which
notebooks nbval runs, and ``tools/execute_notebooks.py`` imports it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SUFFIXES = (".md", ".ipynb", ".rst")


def _entries(node):
    """Yield every ``file:`` value of a jb-book ToC (root, parts, chapters, sections)."""
    if isinstance(node, dict):
        for key in ("root", "file"):
            if key in node:
                yield node[key]
        for key in ("parts", "chapters", "sections"):
            for child in node.get(key) or []:
                yield from _entries(child)
    elif isinstance(node, list):
        for child in node:
            yield from _entries(child)


def toc_files(root: Path = ROOT) -> list[Path]:
    """Files named in ``_toc.yml``, resolved to existing paths where possible.

    An entry without a suffix is matched against ``.md``, ``.ipynb`` and ``.rst``; when none
    exists the bare path is returned so callers can report it as missing.
    """
    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    files = []
    for entry in _entries(toc):
        path = root / entry
        if path.suffix not in SUFFIXES:
            found = [path.with_name(path.name + s) for s in SUFFIXES]
            found = [p for p in found if p.exists()]
            path = found[0] if found else path
        files.append(path)
    return files


def toc_notebooks(root: Path = ROOT) -> list[Path]:
    """The ``.ipynb`` files listed in ``_toc.yml``, in book order."""
    return [p for p in toc_files(root) if p.suffix == ".ipynb" and p.exists()]


if __name__ == "__main__":
    for nb in toc_notebooks():
        print(nb.relative_to(ROOT).as_posix())
    sys.exit(0)
