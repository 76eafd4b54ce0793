"""The reader's book (issue 11): every chapter's code fits 79 columns, every display equation
is split into lines that fit the column, and every chapter opens with what the reader will be
able to do and closes with a summary, further reading, its exercise and its notebook."""

import re

import pytest

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
