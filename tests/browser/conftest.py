"""Fixtures of the browser test: the built book over local HTTP, and headless Chromium.

The book is served by ``http.server`` on 127.0.0.1 (a free port) rather than opened as
``file://``, so that scripts, fetches and relative links behave as on the web. Debian's
``chromium`` and ``chromium-driver`` are used by path: Selenium Manager never runs, so nothing is
downloaded at test time (``make browser-deps`` installs them, and MathJax, when missing).

The pages load MathJax 3 from a CDN, which CI cannot reach. The server rewrites that one URL
prefix in the HTML it sends to a local copy of the same MathJax release (npm ``mathjax@3``,
installed by ``make browser-deps``); every other byte is the built book as it is.

These tests are collected only when pytest is pointed at this folder (``make browser`` runs
``pytest tests/browser``); ``pytest tests``, the unit-test step, skips them: they need a built
book and a browser.
"""

from __future__ import annotations

import functools
import os
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
# `make book-strict` builds with --path-output _build/strict; Jupyter Book writes the HTML to
# <path-output>/_build/html.
BOOK_HTML = Path(os.environ.get("PINNLIB_BOOK_HTML", ROOT / "_build/strict/_build/html"))
MATHJAX_DIR = Path(
    os.environ.get("PINNLIB_MATHJAX_DIR", ROOT / "_build/browser-deps/node_modules/mathjax")
)
SCREENSHOTS = Path(os.environ.get("PINNLIB_SCREENSHOTS", ROOT / "_build/screenshots"))
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

# Remote URL prefix in the built pages -> local path the test server answers from.
OFFLINE_PREFIX = "/__offline__/mathjax/"
REWRITES = {"https://cdn.jsdelivr.net/npm/mathjax@3/": OFFLINE_PREFIX}


def pytest_ignore_collect(collection_path, config):
    """Collect this folder only when a command-line argument points into it."""
    for arg in config.args:
        path = Path(str(arg).split("::")[0]).resolve()
        if path == HERE or HERE in path.parents:
            return None
    return True


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: needs the built book and headless Chromium")


class _BookHandler(SimpleHTTPRequestHandler):
    """Static files of the book; HTML with the CDN MathJax URL pointed at the local copy."""

    def log_message(self, format, *args):  # noqa: A002 - quiet: pytest shows failures
        pass

    def translate_path(self, path):
        clean = path.split("?", 1)[0].split("#", 1)[0]
        if clean.startswith(OFFLINE_PREFIX):
            return str(MATHJAX_DIR / clean[len(OFFLINE_PREFIX) :])
        return super().translate_path(path)

    def do_GET(self):
        local = Path(self.translate_path(self.path))
        if local.is_dir():
            local = local / "index.html"
        if local.suffix != ".html" or not local.is_file():
            return super().do_GET()
        html = local.read_text(encoding="utf-8")
        for remote, here in REWRITES.items():
            html = html.replace(remote, here)
        body = html.encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="session")
def book_html() -> Path:
    if not (BOOK_HTML / "book" / "intro.html").is_file():
        pytest.fail(f"no built book in {BOOK_HTML}: run `make book-strict` first", pytrace=False)
    return BOOK_HTML


@pytest.fixture(scope="session")
def base_url(book_html):
    """http://127.0.0.1:<free port>/ serving the built book; stopped after the session."""
    if not (MATHJAX_DIR / "es5" / "tex-mml-chtml.js").is_file():
        pytest.fail(f"no local MathJax in {MATHJAX_DIR}: run `make browser-deps`", pytrace=False)
    handler = functools.partial(_BookHandler, directory=str(book_html))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def driver():
    """Headless Debian Chromium through Debian's chromedriver (no Selenium Manager)."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).is_file():
            pytest.fail(f"{path} is missing: run `make browser-deps`", pytrace=False)
    os.environ["SE_OFFLINE"] = "true"  # belt and braces: Selenium Manager must not download
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--hide-scrollbars",
        "--window-size=1280,900",
        "--force-device-scale-factor=1",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    browser.set_page_load_timeout(60)
    browser.set_script_timeout(60)
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
