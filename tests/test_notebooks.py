"""Every paired notebook: the .ipynb matches its MyST .md source (the .md is the truth)."""

import pytest

from coursekit.notebooks import paired_notebooks, stale_notebooks


def test_chapters_are_paired(root):
    chapters = [p.name for p in paired_notebooks(root) if p.parent.name == "book"]
    assert chapters, "no paired chapters found under book/"
    for md in (root / "book").glob("[0-9][0-9]_*.md"):
        assert md in paired_notebooks(root), f"{md.name} lacks the 'formats: ipynb,md:myst' header"


def test_every_pair_is_in_sync(root):
    problems = stale_notebooks(root)
    assert not problems, "\n".join(problems) + "\nrun: python -m coursekit.notebooks sync"


def test_a_stale_pair_is_detected(tmp_path):
    book = tmp_path / "book"
    book.mkdir()
    md = book / "01_x.md"
    md.write_text("---\njupytext:\n  formats: ipynb,md:myst\n  text_representation:\n"
                  "    extension: .md\n    format_name: myst\nkernelspec:\n  display_name: Python 3\n"
                  "  language: python\n  name: python3\n---\n\n# X\n\n```{code-cell} ipython3\n"
                  "x = 1\n```\n")
    assert stale_notebooks(tmp_path) == ["book/01_x.ipynb is missing"]
    from coursekit.notebooks import sync

    sync(tmp_path)
    assert stale_notebooks(tmp_path) == []
    md.write_text(md.read_text().replace("x = 1", "x = 2"))
    assert stale_notebooks(tmp_path) == ["book/01_x.ipynb differs from book/01_x.md"]
