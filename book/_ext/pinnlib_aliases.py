"""Sphinx extension: make ``pinnlib.<name>`` references resolve to the documented object.

pinnlib re-exports its public names at the top level (``pinnlib.ReLoBRaLo``), while the API page
documents each one once, under the module that defines it (``pinnlib.balancing.ReLoBRaLo``).
Documenting both would show every class twice, so instead this handler retries a reference that
Sphinx could not resolve, such as :class:`pinnlib.ReLoBRaLo` or :meth:`pinnlib.Trainer.run`,
under the object's defining module. Anything it cannot resolve is left to Sphinx (and reported
as usual by the nitpicky build).
"""

from __future__ import annotations

import importlib


def _canonical(target: str) -> tuple[str, str] | None:
    """``pinnlib.Sum.update`` -> ``("pinnlib.balancing", "Sum.update")`` (None if n/a)."""
    parts = target.split(".")
    for i in range(len(parts) - 1, 0, -1):  # longest importable module prefix first
        modname = ".".join(parts[:i])
        try:
            module = importlib.import_module(modname)
        except ImportError:
            continue
        obj = getattr(module, parts[i], None)
        real_module = getattr(obj, "__module__", None)
        qualname = getattr(obj, "__qualname__", None)
        if not real_module or not qualname or real_module == modname:
            return None
        return real_module, ".".join([qualname, *parts[i + 1 :]])
    return None


def _resolve(app, env, node, contnode):
    target = node.get("reftarget", "")
    if node.get("refdomain") != "py" or not target.startswith("pinnlib."):
        return None
    canonical = _canonical(target)
    if canonical is None:
        return None
    module, qualname = canonical
    domain = env.get_domain("py")
    # Documented under its own module (pinnlib.pdes.kirchhoff.Kirchhoff) or under a package
    # that re-exports it (pinnlib.pdes.Kirchhoff): try the longest module path first.
    module_parts = module.split(".")
    for cut in range(len(module_parts), 0, -1):
        candidate = ".".join(module_parts[:cut]) + "." + qualname
        found = domain.resolve_xref(
            env, node["refdoc"], app.builder, node["reftype"], candidate, node, contnode
        )
        if found is not None:
            return found
    return None


def setup(app):
    app.connect("missing-reference", _resolve)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
