"""The built book, opened in a real browser (headless Chromium through Playwright).

Fails when a page does not load, raises a JavaScript error, shows math that MathJax did not render
(every ``.math`` element must hold an ``<mjx-container>``, and no raw ``$``, ``\\mathbb``, ``\\sum`` or
``\\(`` is left in the text outside code), has an image that did not load or lacks alt text, or
asks any host but the local server for anything (scripts above all: the book must work offline).
Every page also runs axe-core (vendored under ``tests/vendor/axe-core``): serious or critical
accessibility violations fail, and the count per page is printed. Further tests tap the chapter
list open on a phone-sized screen and operate search, the sidebar and the hidden cells with the
keyboard alone.
Reads ``_build/html``, which ``make test`` builds first. Without Chromium the test is skipped with
instructions, except under CI (``CI=true``), where a missing browser is a failure.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import shutil
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest

from conftest import ROOT, under_ci

pytestmark = pytest.mark.browser

HTML = ROOT / "_build" / "html"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]
INSTALL_HINT = ("install Chromium to run the browser check of the book: `sudo apt-get install "
                "chromium` (Debian/Ubuntu), then `make test`")


def _unavailable(reason: str):
    if under_ci():
        pytest.fail(f"{reason} (CI=true: the browser check may not be skipped)")
    pytest.skip(reason)


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    _unavailable(f"no Chromium on this machine: {INSTALL_HINT}")


def _pages() -> list[Path]:
    if not (HTML / "index.html").exists():
        _unavailable(f"the book is not built ({HTML} is missing): run `make book` first")
    return sorted(p for p in HTML.rglob("*.html")
                  if "_static" not in p.parts and "_sources" not in p.parts)


@contextlib.contextmanager
def _serve(directory: Path):
    handler = functools.partial(_QuietHandler, directory=str(directory))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()


@pytest.fixture(scope="module")
def server():
    with _serve(HTML) as base:
        yield base


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output readable
        pass


@pytest.fixture(scope="module")
def browser():
    executable = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the Python package playwright is missing: pip install -r requirements.txt")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


MATH_TIMEOUT_MS = 20_000
AXE = ROOT / "tests" / "vendor" / "axe-core" / "axe.min.js"
# WCAG 2.0/2.1 A and AA, plus axe's best practices; only serious and critical findings fail.
AXE_RUN = """async () => {
  const result = await axe.run(document, {resultTypes: ['violations']});
  return result.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.length, where: v.nodes.slice(0, 3).map(n => n.target.join(' '))}));
}"""
FAILING_IMPACTS = ("serious", "critical")
# Text nodes that still hold TeX: MathJax did not see the formula (a line that markdown turned
# into a list item, a formula split over an inline code span, ...). Code, rendered math and the
# page's scripts are left out.
RAW_TEX = r"""() => {
  const skip = 'pre, code, kbd, samp, script, style, mjx-container, .math, .MathJax, textarea';
  const pattern = /\$|\\(mathbb|mathcal|mathrm|sum|frac|log|mid|\(|\[)/;
  const found = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    if (!node.parentElement || node.parentElement.closest(skip)) continue;
    const match = node.textContent.match(pattern);
    if (match) {
      const text = node.textContent;
      found.push(text.slice(Math.max(0, match.index - 30), match.index + 30).trim());
    }
  }
  return found.slice(0, 5);
}"""
AXE_COUNTS: dict[str, dict[str, int]] = {}


def _check_page(browser, base: str, page_path: Path, html: Path = HTML) -> list[str]:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    url = f"{base}/{page_path.relative_to(html).as_posix()}"
    page = browser.new_page()
    foreign, errors = [], []
    page.on("request", lambda r: foreign.append(f"{r.resource_type} {r.url}")
            if urlparse(r.url).hostname not in ("127.0.0.1", None) and
            not r.url.startswith(("data:", "blob:", "about:")) else None)
    page.on("pageerror", lambda e: errors.append(f"JavaScript error: {e}"))
    problems = []
    try:
        response = page.goto(url, wait_until="load", timeout=30_000)
        if response is None or not response.ok:
            return [f"{url}: did not load (status {getattr(response, 'status', None)})"]
        if 'http-equiv="Refresh"' in page_path.read_text(encoding="utf-8"):
            # index.html only redirects to the first chapter: follow it, then check that page.
            page.wait_for_url(lambda u: not u.endswith(page_path.name), timeout=30_000)
            page.wait_for_load_state("load")
        n_math = page.evaluate("document.querySelectorAll('.math').length")
        if n_math:
            try:
                page.wait_for_function(
                    "() => Array.from(document.querySelectorAll('.math'))"
                    ".every(m => m.querySelector('mjx-container'))", timeout=MATH_TIMEOUT_MS)
            except PlaywrightTimeout:
                problems.append(f"{url}: math not rendered ({n_math} formulas, no <mjx-container>)")
            if page.evaluate("document.querySelectorAll('mjx-merror').length"):
                problems.append(f"{url}: MathJax reported an error in a formula")
        page.wait_for_load_state("networkidle", timeout=30_000)
        broken = page.evaluate(
            "Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))"
            ".map(i => i.getAttribute('src').slice(0, 80))")
        problems += [f"{url}: image did not load: {src}" for src in broken]
        problems += [f"{url}: raw TeX in the text: {text!r}" for text in page.evaluate(RAW_TEX)]
        problems += _axe(page, url)
    except Exception as err:  # noqa: BLE001 - a timeout is a finding, reported with the page
        problems.append(f"{url}: {type(err).__name__}: {str(err).splitlines()[0]}")
    finally:
        page.close()
    problems += [f"{url}: requested another host: {f}" for f in foreign]
    problems += [f"{url}: {e}" for e in errors]
    return problems


def _axe(page, url: str) -> list[str]:
    """Run axe-core on the page; print its violations, return the serious and critical ones."""
    page.add_script_tag(path=str(AXE))
    violations = page.evaluate(AXE_RUN)
    counts = {impact: sum(v["nodes"] for v in violations if v["impact"] == impact)
              for impact in ("minor", "moderate", "serious", "critical")}
    AXE_COUNTS[url] = counts
    print(f"axe {urlparse(url).path}: " + ", ".join(f"{k} {n}" for k, n in counts.items()))
    return [f"{url}: axe {v['impact']} {v['id']} ({v['help']}) on {v['nodes']} element(s), "
            f"e.g. {v['where']}" for v in violations if v["impact"] in FAILING_IMPACTS]


def test_every_page_loads_renders_math_and_images_offline(browser, server):
    pages = _pages()
    assert len(pages) >= 3, f"only {len(pages)} pages were built"
    problems = []
    AXE_COUNTS.clear()
    for page_path in pages:
        problems += _check_page(browser, server, page_path)
    total = {k: sum(c[k] for c in AXE_COUNTS.values()) for k in ("serious", "critical")}
    print(f"axe over {len(AXE_COUNTS)} pages: serious {total['serious']}, "
          f"critical {total['critical']}")
    assert not problems, "\n".join(problems)
    assert len(AXE_COUNTS) == len(pages), "axe-core did not run on every page"


def _first_chapter() -> str:
    return next(p for p in _pages() if p.parent.name == "book" and p.name[:2].isdigit()
                ).relative_to(HTML).as_posix()


@pytest.mark.parametrize("width", [390, 1280])
def test_the_visible_sidebar_button_opens_the_chapter_list(browser, server, width):
    """Tapping the header's sidebar button shows the chapter list (a dialog on a phone, the
    sidebar toggled on a wide screen): the themes bind it to a hidden twin (issue 27)."""
    context = browser.new_context(viewport={"width": width, "height": 844}, has_touch=True)
    page = context.new_page()
    page.goto(f"{server}/{_first_chapter()}", wait_until="load")
    button = page.locator(".primary-toggle:visible").first
    if width < 992:
        assert not page.locator("#pst-primary-sidebar-modal").evaluate("d => d.open")
        button.tap()
        page.wait_for_function(
            "document.querySelector('#pst-primary-sidebar-modal').open", timeout=5_000)
        assert page.locator("#pst-primary-sidebar-modal a[href*='02_gan_math']").is_visible()
    else:
        sidebar = page.locator("#pst-primary-sidebar")
        assert sidebar.is_visible()
        button.click()
        page.wait_for_function(
            "document.querySelector('#pst-primary-sidebar').classList"
            ".contains('pst-sidebar-hidden')", timeout=5_000)
    context.close()


def test_search_sidebar_and_hidden_cells_work_from_the_keyboard(browser, server):
    """Without a mouse: Ctrl+K opens search with the cursor in it, Enter on the focused sidebar
    button opens the chapter list, Enter on a hidden cell's summary shows the cell."""
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.goto(f"{server}/{_first_chapter()}", wait_until="load")
    page.keyboard.press("Control+k")
    page.wait_for_function("document.activeElement && document.activeElement.name === 'q'",
                           timeout=5_000)
    page.keyboard.press("Escape")
    page.locator(".primary-toggle:visible").first.focus()
    page.keyboard.press("Enter")
    page.wait_for_function(
        "document.querySelector('#pst-primary-sidebar-modal').open", timeout=5_000)
    page.keyboard.press("Escape")
    context.close()
    page = browser.new_page()
    for page_path in _pages():
        if "<details" not in page_path.read_text(encoding="utf-8"):
            continue
        page.goto(f"{server}/{page_path.relative_to(HTML).as_posix()}", wait_until="load")
        summary = page.locator("details:not([open]) > summary").first.element_handle()
        summary.focus()
        page.keyboard.press("Enter")
        assert summary.evaluate("s => s.parentElement.open"), page_path.name
        break
    else:
        pytest.fail("no page has a hidden cell (<details>) to open with the keyboard")
    page.close()


def test_math_pages_really_contain_rendered_math(browser, server):
    """Guard against a vacuous pass: the chapters do have math, and it is rendered."""
    page = browser.new_page()
    rendered = 0
    for page_path in _pages():
        if 'class="math' in page_path.read_text(encoding="utf-8"):
            page.goto(f"{server}/{page_path.relative_to(HTML).as_posix()}", wait_until="load")
            # attached, not visible: a page's first formula may sit in a collapsed cell
            page.wait_for_selector("mjx-container", state="attached", timeout=30_000)
            rendered += page.evaluate("document.querySelectorAll('mjx-container').length")
    page.close()
    assert rendered > 10, f"only {rendered} formulas rendered across the whole book"


BROKEN_PAGE = """<!DOCTYPE html><html><head>
<script src="https://cdn.example.invalid/lib.js"></script></head>
<body><span class="math">\\(x^2\\)</span><img src="missing.png">
<ul><li>+ \\alpha \\, \\mathbb E[x]$.</li></ul>
<button style="color: #ccc; background: #ddd"></button></body></html>"""


def test_the_check_catches_a_broken_page(browser, tmp_path):
    """The checks can fail: a foreign script, unrendered math and a missing image are all reported."""
    (tmp_path / "broken.html").write_text(BROKEN_PAGE)
    with _serve(tmp_path) as base:
        problems = "\n".join(_check_page(browser, base, tmp_path / "broken.html", tmp_path))
    assert "requested another host: script https://cdn.example.invalid/lib.js" in problems
    assert "math not rendered (1 formulas" in problems
    assert "image did not load: missing.png" in problems
    assert "raw TeX in the text: '+ \\\\alpha \\\\, \\\\mathbb E[x]$.'" in problems
    assert "axe critical button-name" in problems  # a button without a name
    assert "axe critical image-alt" in problems  # an image without alt text
