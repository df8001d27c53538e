"""The values a notebook glued (myst-nb's ``glue``), read back from its stored outputs: shared by
the tests that recompute a chapter's numbers from stored results."""

from __future__ import annotations


def glued(notebook) -> dict[str, str]:
    """``{name: text/plain}`` of every glued value in the notebook's stored outputs."""
    values = {}
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            meta = output.get("metadata", {}).get("scrapbook")
            if meta:
                values[meta["name"]] = output["data"].get(meta["mime_prefix"] + "text/plain")
    return values
