"""The bilingual glossary (issue 27): every entry has its Chinese term and a link to a section
that exists, and every chapter links the glossary ({term} roles to terms it defines)."""

from __future__ import annotations

import re

from conftest import ROOT

GLOSSARY = ROOT / "book" / "glossary.md"
CJK = re.compile(r"[\u4e00-\u9fff]")


def _slugify(title: str) -> str:
    from mdit_py_plugins.anchors.index import slugify

    return slugify(title)


def _entries() -> dict[str, str]:
    """English term -> its block of the glossary (terms, Chinese term, definitions, link)."""
    body = GLOSSARY.read_text(encoding="utf-8").split("```{glossary}")[1].split("```")[0]
    blocks = re.split(r"\n(?=[^\s{:])", body.strip())
    return {block.splitlines()[0].strip(): block for block in blocks
            if block.strip() and not block.startswith(":")}


def test_every_entry_is_bilingual_and_links_a_section_that_exists():
    entries = _entries()
    assert len(entries) >= 30
    for term, block in entries.items():
        lines = block.splitlines()
        assert lines[1].startswith("{zh}`") and CJK.search(lines[1]), f"{term}: no Chinese term"
        assert sum(bool(CJK.search(line)) for line in lines[2:]) >= 1, f"{term}: no Chinese text"
        link = re.search(r"\]\((\d\d_[a-z_]+)\.md#([^)]+)\)", block)
        assert link, f"{term}: no link to the section that defines it"
        page, anchor = link.groups()
        text = (ROOT / "book" / f"{page}.md").read_text(encoding="utf-8")
        slugs = {_slugify(line.lstrip("#").strip()) for line in text.splitlines()
                 if re.match(r"#{1,2} ", line)}
        assert anchor in slugs, f"{term}: {page}.md has no section #{anchor}"


def test_chapters_link_the_terms_they_use():
    terms = {t.casefold() for t in _entries()}
    chapters = sorted(p for p in (ROOT / "book").glob("[0-9][0-9]_*.md"))
    unlinked = []
    for chapter in chapters:
        used = re.findall(r"\{term\}`(?:[^`<]*<)?([^`>]+)>?`", chapter.read_text(encoding="utf-8"))
        assert all(u.strip().casefold() in terms for u in used), (chapter.name, used)
        if not used:
            unlinked.append(chapter.name)
    linked_from = len(chapters) - len(unlinked)
    print(f"{linked_from} of {len(chapters)} chapters link the glossary; not yet: {unlinked}")
    assert not unlinked, f"chapters that link no glossary term: {unlinked}"
