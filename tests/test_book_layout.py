"""The reader's book (issue 11): every chapter's code fits 79 columns, every display equation
is split into lines that fit the column, and every chapter opens with what the reader will be
able to do and closes with a summary, further reading, its exercise and its notebook. Every
figure has a caption, a unique name and alt text of its own (issue 27), read from the myst-nb
cell metadata of the sources, and in the built HTML (when ``_build/html`` exists) every output
image sits in a captioned figure of its own, with alt text that is neither empty nor a path."""

import html.parser
import re

import pytest
import yaml

from coursekit.notebooks import paired_notebooks

WIDTH = 79  # characters of code per line that fit the book's column without scrolling
MATH_LINE = 110  # characters of LaTeX source per display-math line (about 700 px rendered)


def chapters(root):
    return sorted(p for p in paired_notebooks(root) if p.parent.name == "book")


def code_lines(text: str):
    """(line number, line) of every line inside a ```{code-cell} block (not the cell's options:
    ``:key:`` lines or the YAML block between ``---`` lines that opens the cell)."""
    inside = options = False
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("```{code-cell}"):
            inside, first = True, True
            continue
        if inside and first and line == "---":
            options = True
        elif options:
            options = line != "---"
        elif inside and line.startswith("```"):
            inside = False
        elif inside and not line.startswith(":"):
            yield number, line
        first = False


def math_blocks(text: str):
    """(line number, block) of every $$ ... $$ display block."""
    for match in re.finditer(r"^\$\$\n(.*?)\n\$\$", text, flags=re.S | re.M):
        yield text[: match.start()].count("\n") + 1, match.group(1)


def test_code_fits_the_column(root):
    long = [f"{md.name}:{n}: {len(line)} characters" for md in chapters(root)
            for n, line in code_lines(md.read_text()) if len(line) > WIDTH]
    assert not long, "code lines longer than 79 characters:\n" + "\n".join(long)


def test_display_math_is_split(root):
    wide = [f"{md.name}:{n}" for md in chapters(root)
            for n, block in math_blocks(md.read_text())
            if any(len(line) > MATH_LINE for line in block.splitlines())]
    assert not wide, "display math lines too wide for the column (split with aligned):\n" + \
        "\n".join(wide)


@pytest.mark.parametrize("needle", [
    "**What you will be able to do**", "\n## Summary", "\n## Further reading",
    "{doc}`../exercises/", "{download}`"])
def test_every_chapter_has(root, needle):
    missing = [md.name for md in chapters(root) if needle not in md.read_text()]
    assert not missing, f"chapters without {needle!r}: {missing}"


def test_the_checks_can_fail():
    assert list(code_lines("```{code-cell} ipython3\n" + "x" * 80 + "\n```\n"))[0][1] == "x" * 80
    cell = "```{code-cell} ipython3\n---\nmystnb:\n  a: " + "y" * 90 + "\n---\nx = 1\n```\n"
    assert list(code_lines(cell)) == [(6, "x = 1")]
    block = "$$\n" + "a" * (MATH_LINE + 1) + "\n$$"
    assert any(len(line) > MATH_LINE for _, b in math_blocks(block) for line in b.splitlines())


# a cell that calls one of these draws a figure (the inline backend shows it at the cell's end)
DRAWS = re.compile(r"\bplt\.(show|subplots|figure)\(|\bshow_images\(")
PATH_LIKE = re.compile(r"^\S*\.(png|svg|jpe?g|gif|pdf)$|^\S*/\S*$", re.I)
MIN_TEXT = 30  # characters: a caption or alt text shorter than this says nothing about the plot


def code_cells(text: str):
    """(line number, metadata dict, code) of every ```{code-cell} block; the metadata is the
    YAML block between ``---`` lines that opens the cell ({} without one)."""
    pattern = r"^```\{code-cell\}[^\n]*\n(?:---\n(.*?)\n---\n)?(.*?)^```$"
    for match in re.finditer(pattern, text, flags=re.S | re.M):
        meta = yaml.safe_load(match.group(1)) if match.group(1) else {}
        yield text[: match.start()].count("\n") + 1, meta or {}, match.group(2)


def figure_problems(name: str, text: str, seen: dict) -> list[str]:
    """What is missing from the figure cells of one source: caption, name (unique in
    ``seen``), alt text that is not empty, not a file path and not the caption again."""
    problems = []
    for line, meta, code in code_cells(text):
        if not DRAWS.search(code):
            continue
        where = f"{name}:{line}"
        made = len(re.findall(r"\bplt\.(?:subplots|figure)\(", code))
        if max(made, code.count("plt.show()")) > 1:
            problems.append(f"{where}: a cell that draws {max(made, code.count('plt.show()'))} "
                            "figures; myst-nb gives each the cell's caption: one per cell")
        options = meta.get("mystnb") or {}
        figure, image = options.get("figure") or {}, options.get("image") or {}
        caption = str(figure.get("caption", "")).strip()
        alt = str(image.get("alt", "")).strip()
        label = str(figure.get("name", "")).strip()
        if len(caption) < MIN_TEXT:
            problems.append(f"{where}: a figure without a caption (mystnb: figure: caption)")
        if not label:
            problems.append(f"{where}: a figure without a name (mystnb: figure: name)")
        elif label in seen:
            problems.append(f"{where}: figure name {label!r} also used at {seen[label]}")
        else:
            seen[label] = where
        if len(alt) < MIN_TEXT or PATH_LIKE.match(alt):
            problems.append(f"{where}: a figure without alt text (mystnb: image: alt), "
                            f"got {alt!r}")
        elif alt == caption:
            problems.append(f"{where}: the alt text repeats the caption; say what it shows")
    return problems


def test_every_figure_has_caption_name_and_alt(root):
    seen: dict = {}
    problems = [p for md in chapters(root) for p in figure_problems(md.name, md.read_text(),
                                                                    seen)]
    assert not problems, "figures the reader cannot use:\n" + "\n".join(problems)


class _Figures(html.parser.HTMLParser):
    """The images of one built page (alt, source, the figure around it) and the captions of
    the page's figures."""

    def __init__(self):
        super().__init__()
        self.images, self.captions, self.stack = [], [], []
        self._caption = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "figure":
            self.stack.append({"caption": False})
        elif tag == "figcaption" and self.stack:
            self.stack[-1]["caption"] = True
        elif tag == "span" and "caption-text" in (attrs.get("class") or "").split():
            self._caption = []  # the caption's words, without its number ("Fig. 3")
        elif tag == "img":
            self.images.append({"alt": (attrs.get("alt") or "").strip(),
                                "src": attrs.get("src", ""),
                                "figure": self.stack[-1] if self.stack else None})

    def handle_data(self, data):
        if self._caption is not None:
            self._caption.append(data)

    def handle_endtag(self, tag):
        if tag == "span" and self._caption is not None:
            self.captions.append(" ".join("".join(self._caption).split()))
            self._caption = None
        elif tag == "figure" and self.stack:
            self.stack.pop()


def html_problems(name: str, page: str) -> list[str]:
    """Images of a built page (the cells' outputs and figures, in ``_images/``) outside a
    captioned figure, alt text that is empty or a path, and a caption used by two figures (a
    cell that drew two of them gets its caption twice)."""
    parsed = _Figures()
    parsed.feed(page)
    problems = []
    for image in parsed.images:
        src = image["src"].rsplit("/", 1)[-1]
        if not image["alt"] or PATH_LIKE.match(image["alt"]) or src in image["alt"]:
            problems.append(f"{name}: image {src} has alt text {image['alt']!r}")
        if "_images/" in image["src"] and (image["figure"] is None
                                           or not image["figure"]["caption"]):
            problems.append(f"{name}: image {src} is not in a captioned figure")
    repeated = {c for c in parsed.captions if parsed.captions.count(c) > 1}
    problems += [f"{name}: two figures share the caption {c[:60]!r}..." for c in repeated]
    return problems


def test_built_figures_are_captioned(root):
    pages = sorted((root / "_build" / "html" / "book").glob("[0-9]*.html"))
    if not pages:
        pytest.skip("the book is not built (_build/html/book is missing): run `make book`")
    problems = [p for page in pages for p in html_problems(page.name, page.read_text())]
    assert not problems, "figures in the built book:\n" + "\n".join(problems)


def test_the_figure_checks_can_fail():
    bare = "```{code-cell} ipython3\nplt.plot([1, 2])\nplt.show()\n```\n"
    assert len(figure_problems("x.md", bare, {})) == 3  # caption, name, alt
    two = bare.replace("plt.show()\n", "plt.show()\nplt.figure()\nplt.show()\n")
    assert "one per cell" in figure_problems("x.md", two, {})[0]
    alt_is_path = ("```{code-cell} ipython3\n---\nmystnb:\n  figure:\n    caption: " + "c" * 40
                   + "\n    name: fig-a\n  image:\n    alt: ../_images/abc.png\n---\n"
                   "show_images(x)\n```\n")
    assert [p for p in figure_problems("x.md", alt_is_path, {}) if "alt text" in p]
    twice = alt_is_path.replace("../_images/abc.png", "a" * 40)
    seen: dict = {}
    assert not figure_problems("x.md", twice, seen)
    assert "also used" in figure_problems("y.md", twice, seen)[0]
    page = ('<div class="cell_output"><img alt="../_images/abc.png" src="../_images/abc.png">'
            '<figure><img alt="a chart" src="../_images/d.png"><figcaption><p><span '
            'class="caption-number">Fig. 1 </span><span class="caption-text">C</span></p>'
            '</figcaption></figure><figure><img alt="a chart" src="../_images/e.png">'
            '<figcaption><p><span class="caption-number">Fig. 2 </span>'
            '<span class="caption-text">C</span></p></figcaption></figure></div>')
    found = html_problems("p.html", page)
    assert any("abc.png has alt text" in p for p in found)
    assert any("abc.png is not in a captioned figure" in p for p in found)
    assert any("share the caption" in p for p in found)
