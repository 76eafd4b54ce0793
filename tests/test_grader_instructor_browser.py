"""The review page and the class report in a real browser (headless Chromium through
Playwright): tick rubric items, save, apply the saved marks, and the score and the feedback
change; an answer holding ``<script>`` or an ``onerror`` image does nothing; the report's figures
load offline (exercises part). Skipped without Chromium, except under CI."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, under_ci
from coursekit.grader import gradebook, review, written
from test_grader_instructor import report, save

pytestmark = pytest.mark.browser
FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
HOSTILE = ("<script>window.owned = 1; alert('script')</script>\n\n"
           "<img src=x onerror=\"window.owned = 2; alert('onerror')\">\n\n"
           "[click](javascript:window.owned=3) and $\\alpha + \\beta$")


@pytest.fixture(scope="module")
def browser():
    executable = next((shutil.which(n) for n in ("chromium", "chromium-browser",
                                                 "google-chrome") if shutil.which(n)), None)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        executable = None
    if executable is None:
        if under_ci():
            pytest.fail("no Chromium or Playwright (CI=true: the browser check may not skip)")
        pytest.skip("no Chromium or Playwright on this machine")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=executable, args=FLAGS)
        yield chromium
        chromium.close()


def _open(browser, path):
    page = browser.new_page(accept_downloads=True)
    events = []
    page.on("dialog", lambda d: (events.append(f"dialog {d.message}"), d.dismiss()))
    page.on("pageerror", lambda e: events.append(f"error {e}"))
    page.on("request", lambda r: events.append(f"request {r.url}")
            if not r.url.startswith(("file:", "data:", "blob:")) else None)
    page.goto(path.as_uri(), wait_until="load")
    return page, events


def test_marking_in_the_page_changes_score_and_feedback(browser, tmp_path):
    out = tmp_path / "out"
    save(out, [report("ann", "Pixels **depend** on each other: $p(x)$."),
               report("eve", HOSTILE)])
    pages = review.write_pages(out, gradebook.finish(out), {})
    page, events = _open(browser, pages[0])
    # the hostile answer is shown as text and nothing of it ran
    assert page.evaluate("window.owned") is None
    eve = page.locator('section[data-submission="eve"] .text')
    assert "<script>" in eve.inner_text() and eve.locator("img, script, a").count() == 0
    ann = page.locator('section[data-submission="ann"]')
    assert ann.locator(".text strong").inner_text() == "depend"
    if review._mathjax() is not None:  # math rendered by the local MathJax, in the answer
        page.wait_for_function("() => document.querySelector("
                               "'section[data-submission=\"ann\"] .math mjx-container')",
                               timeout=20_000)
    ann.locator("input.criterion").nth(1).check()
    ann.locator("textarea").fill("Say what the components capture.")
    assert ann.locator(".points").inner_text() == "1"
    with page.expect_download() as download:
        page.click("#save")
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.name == "marks-01_background.why.html".replace(".html", ".json")
    assert events == [], events
    page.close()
    done = subprocess.run([sys.executable, "-m", "coursekit", "grade", "review", str(out),
                           "--apply", str(saved)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "added or changed 1 mark(s)" in done.stdout
    with open(out / "grades.csv", newline="") as f:
        rows = {r["submission"]: r for r in csv.DictReader(f)}
    assert float(rows["ann"]["why"]) == 1 and float(rows["ann"]["score"]) == 4
    assert rows["eve"]["why"] == "0" and "not marked yet" in rows["eve"]["needs_review"]
    feedback = (out / "feedback" / "ann.md").read_text()
    assert "met: explains held-out data" in feedback
    assert "missing: names the dependence between pixels (shapes)" in feedback
    assert "marker's comment: Say what the components capture." in feedback
    # the page written again shows the saved mark
    page, events = _open(browser, out / "review" / "01_background.why.html")
    ann = page.locator('section[data-submission="ann"]')
    assert ann.locator("input.criterion").nth(1).is_checked()
    assert ann.locator(".points").inner_text() == "1"
    assert page.evaluate("window.owned") is None and events == [], events
    page.close()


def test_a_changed_answer_is_flagged_in_the_page(browser, tmp_path):
    out = tmp_path / "out"
    save(out, [report("ann", "First answer.")])
    sha = gradebook.read_reports(out)[0]["written"]["why"]["sha256"]
    written.save_marks(out, {"ann": {"why": {"criteria": [True, True], "comment": "",
                                             "answer_sha256": sha}}})
    save(out, [report("ann", "A different answer.")])
    pages = review.write_pages(out, gradebook.finish(out), written.load_marks(out))
    page, events = _open(browser, pages[0])
    assert page.locator("section.flagged .flag").count() == 1
    assert "changed after it was marked" in page.locator(".flag").inner_text()
    assert events == [], events
    page.close()


def test_class_report_figures_load_offline(browser, tmp_path):
    out = tmp_path / "out"
    save(out, [report("ann", "An answer.", auto=3.0), report("ben", None, auto=1.0)])
    gradebook.finish(out)
    page, events = _open(browser, out / "report.html")
    widths = page.evaluate("Array.from(document.images).map(i => i.naturalWidth)")
    assert len(widths) == 2 and all(w > 100 for w in widths)
    assert page.evaluate("document.querySelectorAll('script').length") == 0
    assert events == [], events
    page.close()
