"""The built book as a reader's browser shows it (issues 14 and 17).

Every page in ``_toc.yml`` is opened once in headless Chromium (fixtures in conftest.py), at
1280 px and at 400 px, and inspected; each (page, check) pair is then its own test, so a failure
names the page and the check and lists everything that check found on that page. Screenshots
(full page at both widths, and the phone drawer open) go to ``_build/screenshots/``.

Checks:
  title           the page has a <title> that contains its heading
  raw_markup      no unrendered markup in the prose ({glue, $$, $, \\( \\[, TeX commands, pipe
                  tables); code, outputs printed as text and typeset math are not prose
  traceback       no "Traceback" anywhere in the article (an error output)
  images          every <img> loaded (naturalWidth > 0) after scrolling it into view
  mathjax         MathJax 3 started (startup.promise) and made no error nodes
  math_typeset    every math element of the page was typeset (so a page with math shows some)
  math_width      at 1280 px every display equation fits the text column (not cut or scrolled)
  table_width     at 1280 px every table fits the text column (no hidden column behind a scroll)
  print_blocks    a cell's printed text is one block, not one grey box per print
  colab           the Colab launch link opens book/<this notebook>.ipynb of the repository and
                  branch in _config.yml; pages that are not notebooks have none
  citations       bibliography entries show no label in another style than the text's
                  author-year citations (no "[RPK19]" beside "[Raissi et al., 2019]")
  internal_links  every same-site link goes to an existing file, and its #fragment exists there
  sidebar         the sidebar lists every part caption and every page of _toc.yml
  phone_nav       at 400 px, tapping the visible hamburger button shows the chapter list
  console         the browser logged no SEVERE error (JavaScript errors, failed loads)
  summary_table   (12_comparison only) the summary is a real <table>, not pipe text

A check that fails today only because of notebook content that is being mended elsewhere is
marked xfail(strict=True) for exactly that page below: it still runs, and the mark must go
when the content is fixed (a strict xfail that passes fails the run).
"""

from __future__ import annotations

import base64
import re
import time
from functools import cache
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parents[2]

DESKTOP = 1280
PHONE = 400
HEIGHT = 900
MAX_SHOT_HEIGHT = 30000  # px; longer pages are cut in the screenshot (not in the checks)

CHECKS = (
    "title",
    "raw_markup",
    "traceback",
    "images",
    "mathjax",
    "math_typeset",
    "math_width",
    "table_width",
    "print_blocks",
    "colab",
    "citations",
    "internal_links",
    "sidebar",
    "phone_nav",
    "console",
)

# (page, check) pairs that fail because of notebook content that another change mends
# (issue 17). Keep them honest: list exactly what the check reports today.
CONTENT_FAILURES: dict[tuple[str, str], str] = {}


# --- The book's configuration -----------------------------------------------------------------
def _load_yaml(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text(encoding="utf-8"))


def _toc_pages(node) -> list[str]:
    pages = []
    if isinstance(node, dict):
        for key in ("root", "file"):
            if key in node:
                pages.append(node[key])
        for key in ("parts", "chapters", "sections"):
            for child in node.get(key) or []:
                pages.extend(_toc_pages(child))
    return pages


TOC = _load_yaml("_toc.yml")
CONFIG = _load_yaml("_config.yml")
PAGES = _toc_pages(TOC)  # "book/intro", "book/01_pinn_from_scratch", ...
CAPTIONS = [part["caption"] for part in TOC.get("parts", [])]


def _colab_url(page: str) -> str:
    """https://colab.research.google.com/github/<org>/<repo>/blob/<branch>/<book path>/<page>.ipynb"""
    repo = CONFIG["repository"]
    org_repo = urlsplit(repo["url"]).path.strip("/")
    book = (repo.get("path_to_book") or "").strip("/")
    path = f"{book}/{page}.ipynb" if book else f"{page}.ipynb"
    colab = CONFIG["launch_buttons"]["colab_url"].rstrip("/")
    return f"{colab}/github/{org_repo}/blob/{repo.get('branch', 'main')}/{path}"


def _is_notebook(page: str) -> bool:
    return (ROOT / f"{page}.ipynb").is_file()


# --- JavaScript run in the page ------------------------------------------------------------------
WAIT_MATHJAX = """
const done = arguments[arguments.length - 1];
if (!window.MathJax) { done("none"); return; }
const deadline = Date.now() + 30000;
(function wait() {
  if (window.MathJax.startup && window.MathJax.startup.promise) {
    window.MathJax.startup.promise.then(() => done("ok"), (e) => done("error: " + e));
  } else if (Date.now() > deadline) {
    done("MathJax was configured but did not start within 30 s (script not loaded?)");
  } else {
    setTimeout(wait, 50);
  }
})();
"""

LOAD_IMAGES = """
const done = arguments[arguments.length - 1];
const images = Array.from(document.images);
(async () => {
  for (const img of images) {
    img.loading = "eager";
    img.scrollIntoView({block: "center"});
    await new Promise((r) => setTimeout(r, 20));
  }
  const deadline = Date.now() + 20000;
  while (Date.now() < deadline && images.some((i) => !i.complete)) {
    await new Promise((r) => setTimeout(r, 100));
  }
  window.scrollTo(0, 0);
  done(images.filter((i) => !(i.complete && i.naturalWidth > 0))
             .map((i) => i.getAttribute("src") || "(no src)"));
})();
"""

INSPECT = r"""
const article = document.querySelector("article.bd-article") || document.body;
const notProse = "pre, code, .highlight, mjx-container, .math, script, style, textarea";
const walker = document.createTreeWalker(article, NodeFilter.SHOW_TEXT);
const prose = [];
while (walker.nextNode()) {
  const el = walker.currentNode.parentElement;
  if (el && !el.closest(notProse)) prose.push(walker.currentNode.nodeValue);
}
const h1 = article.querySelector("h1");
const maths = Array.from(article.querySelectorAll(".math"));
const tex = new Map();
try {
  for (const item of MathJax.startup.document.math) tex.set(item.typesetRoot, item.math);
} catch (e) {}
const wide = [];
for (const c of article.querySelectorAll('mjx-container[display="true"]')) {
  const inner = c.querySelector("mjx-math") || c;
  const box = c.closest(".math") || c.parentElement;
  const need = inner.getBoundingClientRect().width, have = box.clientWidth;
  if (need > have + 1) {
    wide.push(`${Math.round(need)} px in a ${have} px column: ` + (tex.get(c) || "").trim().slice(0, 90));
  }
}
const wideTables = [];
for (const t of article.querySelectorAll("table")) {
  if (t.closest("pre, .highlight")) continue;
  const box = t.closest(".pst-scrollable-table-container") || t.parentElement;
  if (t.scrollWidth > box.clientWidth + 1) {
    const head = (t.querySelector("tr") || t).textContent.trim().split(/\s+/).join(" ");
    wideTables.push(`${t.scrollWidth} px in a ${box.clientWidth} px column: ${head.slice(0, 90)}`);
  }
}
const splitPrints = [];
for (const cell of article.querySelectorAll(".cell_output")) {
  const boxes = Array.from(cell.children).filter((c) => c.matches(".output.stream"));
  if (boxes.length > 1) {
    splitPrints.push(`${boxes.length} boxes: ` +
      boxes[0].textContent.trim().split(/\s+/).join(" ").slice(0, 70));
  }
}
const nav = document.querySelector("nav.bd-docs-nav");
return {
  wide_tables: wideTables,
  bib_labels: Array.from(document.querySelectorAll("div.citation > .label"))
                   .filter((l) => l.offsetParent !== null).map((l) => l.textContent.trim()),
  split_prints: splitPrints,
  title: document.title,
  h1: h1 ? h1.textContent.replace(/[#¶]\s*$/, "").trim() : "",
  prose: prose.join(""),
  article_text: article.textContent,
  math_total: maths.length,
  math_untypeset: maths.filter((m) => !m.querySelector("mjx-container"))
                       .map((m) => m.textContent.trim().slice(0, 90)),
  mjx_containers: document.querySelectorAll("mjx-container").length,
  mjx_errors: Array.from(document.querySelectorAll("mjx-merror, [data-mjx-error]"))
                   .map((e) => e.getAttribute("data-mjx-error") || e.textContent.slice(0, 90)),
  wide_math: wide,
  colab: Array.from(document.querySelectorAll('a[href*="colab.research.google.com"]'))
              .map((a) => a.href),
  links: Array.from(document.querySelectorAll("a[href]")).map((a) => a.href),
  captions: nav ? Array.from(nav.querySelectorAll(".caption-text"))
                       .map((c) => c.textContent.trim()) : [],
  nav_links: nav ? Array.from(nav.querySelectorAll("a[href]")).map((a) => a.href) : [],
  tables: Array.from(article.querySelectorAll("table"))
               .filter((t) => !t.closest("pre, .highlight"))
               .map((t) => t.querySelectorAll("tr").length),
};
"""

CHAPTER_LIST_SHOWN = """
const inView = (a) => {
  const r = a.getBoundingClientRect(), s = getComputedStyle(a);
  return r.width > 0 && r.height > 0 && r.left >= 0 && r.right <= innerWidth + 1 &&
         r.top < innerHeight && r.bottom > 0 && s.visibility !== "hidden";
};
const links = Array.from(document.querySelectorAll("nav.bd-docs-nav a.reference"));
return links.filter(inView).map((a) => a.textContent.trim());
"""

# Unrendered markup in prose: what a reader should never see as text.
RAW_PATTERNS = {
    "glue role/directive": r"\{glue",
    "$$": r"\$\$",
    "lone $": r"(?<!\$)\$(?!\$)",
    "\\( or \\)": r"\\[()]",
    "\\[ or \\]": r"\\[\[\]]",
    "TeX command": r"\\[A-Za-z]{2,}",
    "Markdown table rule": r"\|\s*:?-{3,}",
}


def _matches(text: str) -> list[str]:
    found = []
    for name, pattern in RAW_PATTERNS.items():
        for m in re.finditer(pattern, text):
            context = text[max(0, m.start() - 40) : m.end() + 40]
            found.append(f"{name}: ...{' '.join(context.split())}...")
    return list(dict.fromkeys(found))


def _severe(log: list[dict]) -> list[str]:
    """SEVERE console entries, less the browser's own favicon request (the book has none)."""
    return [
        e.get("message", "").strip()
        for e in log
        if e.get("level") == "SEVERE" and "/favicon.ico " not in e.get("message", "")
    ]


@cache
def _ids_of(path: Path) -> frozenset[str]:
    html = path.read_text(encoding="utf-8", errors="replace")
    return frozenset(re.findall(r'\b(?:id|name)="([^"]+)"', html))


def _set_width(driver, width: int) -> None:
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False},
    )
    time.sleep(0.3)  # let the layout settle (media queries, MathJax reflow)


def _shot(driver, path: Path, width: int, full: bool = True) -> None:
    height = HEIGHT
    if full:
        height = driver.execute_script(
            "return Math.max(document.documentElement.scrollHeight, document.body.scrollHeight)"
        )
    data = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": full,
            "clip": {
                "x": 0,
                "y": 0,
                "width": width,
                "height": min(height, MAX_SHOT_HEIGHT),
                "scale": 1,
            },
        },
    )
    path.write_bytes(base64.b64decode(data["data"]))


# --- One visit per page, shared by the page's checks -----------------------------------------------
_VISITS: dict[str, dict[str, list[str]]] = {}


def _visit(page: str, driver, base_url: str, book_html: Path, screenshots: Path) -> dict:
    from selenium.webdriver.common.by import By

    failures: dict[str, list[str]] = {check: [] for check in CHECKS}
    failures["summary_table"] = []
    name = page.split("/")[-1]
    driver.get_log("browser")  # drop what earlier pages logged
    _set_width(driver, DESKTOP)
    driver.get(f"{base_url}{page}.html")

    # MathJax first (it changes the layout), then images (lazy ones need scrolling).
    state = driver.execute_async_script(WAIT_MATHJAX)
    if state not in ("ok", "none"):
        failures["mathjax"].append(state)
    broken = driver.execute_async_script(LOAD_IMAGES)
    failures["images"] += [f"not loaded (naturalWidth 0): {src}" for src in broken]
    info = driver.execute_script(INSPECT)
    _shot(driver, screenshots / f"{name}-{DESKTOP}.png", DESKTOP)

    if not info["title"].strip():
        failures["title"].append("empty <title>")
    elif info["h1"] and info["h1"] not in info["title"]:
        failures["title"].append(f"<title> {info['title']!r} does not contain {info['h1']!r}")

    failures["raw_markup"] += _matches(info["prose"])
    if "Traceback" in info["article_text"]:
        i = info["article_text"].index("Traceback")
        failures["traceback"].append(" ".join(info["article_text"][i : i + 200].split()))

    failures["mathjax"] += [f"MathJax error node: {e}" for e in info["mjx_errors"]]
    if state == "none" and info["math_total"]:
        failures["math_typeset"].append(f"{info['math_total']} math elements but no MathJax")
    failures["math_typeset"] += [f"not typeset: {t}" for t in info["math_untypeset"]]
    if info["math_total"] and not info["mjx_containers"]:
        failures["math_typeset"].append("the page has math but no mjx-container")
    failures["math_width"] += [
        f"wider than the column at {DESKTOP} px: {w}" for w in info["wide_math"]
    ]

    failures["table_width"] += [
        f"wider than the column at {DESKTOP} px: {w}" for w in info["wide_tables"]
    ]
    failures["print_blocks"] += [f"printed text split into {w}" for w in info["split_prints"]]

    want = {_colab_url(page)} if _is_notebook(page) else set()
    got = set(info["colab"])
    if got != want:
        failures["colab"].append(f"Colab links {sorted(got)}, expected {sorted(want)}")

    failures["citations"] += [
        f"bibliography label {label!r} is not author-year like the citations in the text"
        for label in info["bib_labels"]
        if not re.fullmatch(r"\[?\D+, \d{4}[a-z]?\]?", label)
    ]

    origin = base_url.rstrip("/")
    for href in dict.fromkeys(info["links"]):
        if not href.startswith(origin + "/"):
            continue
        parts = urlsplit(href)
        target = book_html / unquote(parts.path).lstrip("/")
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            failures["internal_links"].append(f"{parts.path}: no such file")
        elif parts.fragment and target.suffix == ".html":
            if unquote(parts.fragment) not in _ids_of(target):
                failures["internal_links"].append(f"{parts.path}#{parts.fragment}: no such id")

    missing = [c for c in CAPTIONS if c not in info["captions"]]
    if missing:
        failures["sidebar"].append(f"part captions missing: {missing} (shown: {info['captions']})")
    linked = {urlsplit(h).path for h in info["nav_links"]}
    for other in PAGES:
        if other != page and f"/{other}.html" not in linked:
            failures["sidebar"].append(f"no sidebar link to {other}")

    if name == "12_comparison" and not info["tables"]:
        failures["summary_table"].append("no <table> in the page (the summary is not a table)")

    # Phone width: the chapter list must open from the visible hamburger button.
    _set_width(driver, PHONE)
    _shot(driver, screenshots / f"{name}-{PHONE}.png", PHONE)
    if driver.execute_script(CHAPTER_LIST_SHOWN):
        failures["phone_nav"].append(f"chapter list already shown at {PHONE} px before tapping")
    buttons = [
        b for b in driver.find_elements(By.CSS_SELECTOR, ".primary-toggle") if b.is_displayed()
    ]
    if not buttons:
        failures["phone_nav"].append(f"no visible sidebar (hamburger) button at {PHONE} px")
    else:
        buttons[0].click()
        shown = []
        for _ in range(30):
            shown = driver.execute_script(CHAPTER_LIST_SHOWN)
            if shown:
                break
            time.sleep(0.1)
        _shot(driver, screenshots / f"{name}-{PHONE}-nav.png", PHONE, full=False)
        if not shown:
            failures["phone_nav"].append("tapping the hamburger button showed no chapter list")
        driver.execute_script("document.querySelectorAll('dialog[open]').forEach(d => d.close())")

    failures["console"] += _severe(driver.get_log("browser"))
    return failures


@pytest.fixture
def visit(driver, base_url, book_html, screenshots):
    def get(page: str) -> dict[str, list[str]]:
        if page not in _VISITS:
            _VISITS[page] = _visit(page, driver, base_url, book_html, screenshots)
        return _VISITS[page]

    return get


def _params():
    for page in PAGES:
        for check in CHECKS:
            reason = CONTENT_FAILURES.get((page, check))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            yield pytest.param(page, check, marks=marks, id=f"{page.split('/')[-1]}-{check}")


def _report(page: str, check: str, found: list[str]) -> None:
    if found:
        lines = "\n".join(f"  - {f}" for f in found)
        pytest.fail(f"{page}: {check}: {len(found)} problem(s)\n{lines}", pytrace=False)


@pytest.mark.parametrize(("page", "check"), list(_params()))
def test_page(visit, page, check):
    _report(page, check, visit(page)[check])


def test_comparison_summary_is_a_table(visit):
    page = "book/12_comparison"
    assert page in PAGES, "12_comparison is no longer in _toc.yml; move this test"
    _report(page, "summary_table", visit(page)["summary_table"])
