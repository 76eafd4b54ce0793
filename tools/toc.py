"""A table of contents without the Solutions part, for a book students may see (exercises part).

``python tools/toc.py`` (``make book-students``, ``make pdf-students``) reads ``_toc.yml`` and writes ``_build/_toc_nosolutions.yml``,
the same parts without the one captioned "Solutions". Build the book from it with::

    jupyter-book build . --toc _build/_toc_nosolutions.yml

``only_build_toc_files: true`` in ``_config.yml`` then leaves the solution pages out entirely.
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["without_solutions", "main"]

ROOT = Path(__file__).resolve().parents[1]
CAPTION = "Solutions"


def without_solutions(toc: dict) -> dict:
    """``toc`` (a parsed ``_toc.yml``) without the part captioned "Solutions".

    Example:
        >>> without_solutions({"parts": [{"caption": "A"}, {"caption": "Solutions"}]})
        {'parts': [{'caption': 'A'}]}
    """
    return {**toc, "parts": [p for p in toc.get("parts", []) if p.get("caption") != CAPTION]}


def main(argv: list[str] | None = None) -> int:
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    out = ROOT / "_build" / "_toc_nosolutions.yml"
    out.parent.mkdir(exist_ok=True)
    out.write_text("# Written by python tools/toc.py from _toc.yml: do not edit.\n"
                   + yaml.safe_dump(without_solutions(toc), sort_keys=False), encoding="utf-8")
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
