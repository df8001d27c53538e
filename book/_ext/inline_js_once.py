"""Write each inline ``<script>`` of an extension once per page, not twice.

Sphinx 7 adds a script that an extension registers after the HTML builder started (sphinx-thebe's
``const THEBE_JS_URL = ...``, sphinx-togglebutton's selector) twice: once as it is registered,
with the file name ``None``, and again before writing, with the file name ``''``. The two do not
compare equal, so every page declared ``THEBE_JS_URL`` twice and the browser logged "Identifier
'THEBE_JS_URL' has already been declared". Sphinx 8.2 fixed it (sphinx-doc/sphinx#13402: use
``''`` both times); Jupyter Book 1 pins Sphinx 7, so this extension applies the same fix there.
The browser test (tests/browser) fails on that console error.
"""

from __future__ import annotations

import sphinx
from sphinx.application import Sphinx
from sphinx.builders.html import StandaloneHTMLBuilder


def setup(app: Sphinx) -> dict:
    original = StandaloneHTMLBuilder.add_js_file
    if sphinx.version_info < (8, 2) and not getattr(original, "_inline_once", False):

        def add_js_file(self, filename, **kwargs):
            return original(self, filename or "", **kwargs)

        add_js_file._inline_once = True
        StandaloneHTMLBuilder.add_js_file = add_js_file
    return {"parallel_read_safe": True, "parallel_write_safe": True}
