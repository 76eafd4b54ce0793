"""The whole book as one PDF (``make pdf``, issue 27), built and read back.

Builds ``_build/pdf/book.pdf`` with XeLaTeX from the executed notebooks the HTML build cached
(so it executes nothing new after ``make book``), unless a PDF newer than every source is there,
then checks it: its page count, every chapter's title and the glossary's Chinese terms in its text
(``pdftotext``), no unresolved reference ("??"), no LaTeX error, every figure of the LaTeX source
embedded, the CJK font embedded, and no line overflowing the page by more than 20 pt (the log's
"Overfull \\hbox"). Two pages are rendered to PNG (``pdftoppm``) in ``_build/pdf/pages`` for a
person to look at. Without XeLaTeX or poppler the test is skipped with instructions, except under
CI (``CI=true``), where that is a failure. The build takes a few minutes of CPU (three XeLaTeX
passes over a few hundred pages): the test is marked ``slow``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, under_ci

pytestmark = pytest.mark.slow

PDF = ROOT / "_build" / "pdf" / "book.pdf"
LATEX = ROOT / "_build" / "latex"
PAGES = ROOT / "_build" / "pdf" / "pages"
TOOLS = ("xelatex", "latexmk", "pdftotext", "pdftoppm", "pdfinfo", "pdfimages", "pdffonts")
INSTALL_HINT = ("install the PDF tools: `sudo apt-get install texlive-xetex latexmk "
                "fonts-noto-cjk fonts-dejavu-core poppler-utils` (Debian/Ubuntu), then `make pdf`")
OVERFULL = re.compile(r"^Overfull \\hbox \((\d+(?:\.\d+)?)pt too wide\)(.*)$", re.M)
MAX_OVERFULL_PT = 20.0


def _sources() -> list[Path]:
    return [p for folder in ("book", "solutions", "exercises") for p in (ROOT / folder).glob("*.*")
            if p.suffix in (".md", ".ipynb")] + [ROOT / "_config.yml", ROOT / "_toc.yml"]


@pytest.fixture(scope="module")
def pdf() -> Path:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        reason = f"{', '.join(missing)} missing: {INSTALL_HINT}"
        if under_ci():
            pytest.fail(f"{reason} (CI=true: the PDF check may not be skipped)")
        pytest.skip(reason)
    newest = max(p.stat().st_mtime for p in _sources())
    if not PDF.exists() or PDF.stat().st_mtime < newest:
        done = subprocess.run(["make", "pdf"], cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 0, f"make pdf failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return PDF


def _text(pdf: Path) -> str:
    return subprocess.run(["pdftotext", "-enc", "UTF-8", str(pdf), "-"], capture_output=True,
                          text=True, check=True).stdout


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).casefold()


def _prose(lines: list[str]) -> list[str]:
    """The lines outside fenced blocks: a code cell's ``# comment`` is not a heading."""
    prose, fence = [], None
    for line in lines:
        stripped = line.lstrip()
        if fence is None and stripped.startswith(("```", "~~~")):
            fence = stripped[:3]
        elif fence is not None and stripped.startswith(fence) and not stripped[3:].strip():
            fence = None
        elif fence is None:
            prose.append(line)
    return prose


def _titles() -> list[str]:
    """The first heading of every chapter and back-matter page in the table of contents."""
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    titles = []
    for part in toc["parts"]:
        for entry in part["chapters"]:
            path = ROOT / f"{entry['file']}.md"
            if path.exists():
                lines = path.read_text(encoding="utf-8").splitlines()
            else:  # the exercises' pages are their notebooks
                notebook = json.loads(path.with_suffix(".ipynb").read_text(encoding="utf-8"))
                lines = [line for cell in notebook["cells"] if cell["cell_type"] == "markdown"
                         for line in "".join(cell["source"]).splitlines()]
            heading = next(line[2:].strip() for line in _prose(lines) if line.startswith("# "))
            if entry["file"].startswith("solutions/"):
                heading = re.sub(r"^Exercise(\s+\d+)", r"Solution\1", heading)
            heading = re.sub(r"\{\w+\}`([^`]*)`", r"\1", heading)  # roles: {zh}`...`
            titles.append(re.sub(r"[*_`$]", "", heading))
    return titles


def test_every_chapter_is_in_the_pdf(pdf):
    text = _squash(_text(pdf))
    titles = _titles()
    assert len(titles) >= 20
    missing = [t for t in titles if _squash(t) not in text]
    assert not missing, f"chapter titles not found in {pdf.name}: {missing}"
    pages = int(re.search(r"Pages:\s+(\d+)", subprocess.run(
        ["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout).group(1))
    print(f"{pdf.name}: {pages} pages, {len(titles)} chapters")
    assert pages >= 5 * len(titles), f"only {pages} pages for {len(titles)} chapters"
    assert "??" not in text, "unresolved references (??) in the PDF"


def test_the_glossary_keeps_its_chinese(pdf):
    text = _text(pdf)
    for term in ("生成器", "判别器", "变分自编码器", "证据下界", "无分类器引导", "数据护城河"):
        assert term in text, f"{term} is missing from the PDF (no CJK font?)"
    fonts = subprocess.run(["pdffonts", str(pdf)], capture_output=True, text=True).stdout
    assert "CJK" in fonts, "no CJK font embedded"


def test_the_latex_log_is_clean(pdf):
    log = (LATEX / "book.log").read_text(encoding="utf-8", errors="replace")
    errors = [line for line in log.splitlines() if line.startswith("! ")]
    assert not errors, f"LaTeX errors: {errors[:5]}"
    assert "Missing character" not in log, "a character has no glyph in the fonts used"
    wide = [(float(pt), where.strip()) for pt, where in OVERFULL.findall(log)
            if float(pt) > MAX_OVERFULL_PT]
    print(f"Overfull \\hbox over {MAX_OVERFULL_PT:g} pt: {len(wide)}")
    assert not wide, f"{len(wide)} lines overflow the page by more than 20 pt: {wide[:5]}"


def test_every_figure_is_embedded(pdf):
    tex = (LATEX / "book.tex").read_text(encoding="utf-8")
    figures = len(re.findall(r"\\sphinxincludegraphics", tex))
    listed = subprocess.run(["pdfimages", "-list", str(pdf)], capture_output=True, text=True,
                            check=True).stdout.splitlines()[2:]
    images = [line for line in listed if line.split()[2] == "image"]
    print(f"{figures} figures in the LaTeX source, {len(images)} images in the PDF")
    assert figures >= 20
    assert len(images) >= figures, f"{figures} figures, but only {len(images)} images embedded"


def test_two_pages_rendered_for_a_person_to_look_at(pdf):
    PAGES.mkdir(parents=True, exist_ok=True)
    for page in (1, 12):
        subprocess.run(["pdftoppm", "-png", "-r", "60", "-f", str(page), "-l", str(page),
                        "-singlefile", str(pdf), str(PAGES / f"page-{page}")], check=True)
        png = PAGES / f"page-{page}.png"
        assert png.exists() and png.stat().st_size > 5_000, png
    print(f"rendered: {PAGES}")
