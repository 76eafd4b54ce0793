"""Keeping each MyST-markdown notebook and its paired ``.ipynb`` in step (authoring tool).

The ``.md`` file is the source of truth; its ``.ipynb`` twin exists so that readers can open the
chapter in Jupyter and so that nbval can execute it. ``python -m coursekit.notebooks sync`` brings
every twin up to date (``jupytext --to ipynb --update``); ``python -m coursekit.notebooks check``
exits 1, naming the files, when any twin differs from what ``sync`` would write.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["paired_notebooks", "stale_notebooks", "sync", "main"]

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_FOLDERS = ("book", "solutions", "exercises")


def _is_paired(md: Path) -> bool:
    head = md.read_text(encoding="utf-8")[:2000]
    return head.startswith("---") and "formats: ipynb,md:myst" in head


def paired_notebooks(root: Path = ROOT) -> list[Path]:
    """The ``.md`` files under the notebook folders that declare an ``ipynb,md:myst`` pairing."""
    found = []
    for folder in NOTEBOOK_FOLDERS:
        found += [p for p in sorted((root / folder).rglob("*.md"))
                  if ".ipynb_checkpoints" not in p.parts and _is_paired(p)]
    return found


def _jupytext_update(md: Path) -> None:
    subprocess.run([sys.executable, "-m", "jupytext", "--quiet", "--to", "ipynb", "--update",
                    str(md)], check=True)


def stale_notebooks(root: Path = ROOT) -> list[str]:
    """Problems with the pairs: a missing ``.ipynb``, or one that ``sync`` would change."""
    problems = []
    for md in paired_notebooks(root):
        nb = md.with_suffix(".ipynb")
        if not nb.exists():
            problems.append(f"{nb.relative_to(root)} is missing")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            md_copy, nb_copy = Path(tmp) / md.name, Path(tmp) / nb.name
            shutil.copy(md, md_copy)
            shutil.copy(nb, nb_copy)
            _jupytext_update(md_copy)
            if nb_copy.read_bytes() != nb.read_bytes():
                problems.append(f"{nb.relative_to(root)} differs from {md.relative_to(root)}")
    return problems


def sync(root: Path = ROOT) -> list[Path]:
    """Write every paired ``.ipynb`` from its ``.md``; return the notebooks written."""
    written = []
    for md in paired_notebooks(root):
        _jupytext_update(md)
        written.append(md.with_suffix(".ipynb"))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coursekit.notebooks", description=__doc__)
    parser.add_argument("action", choices=["check", "sync"])
    args = parser.parse_args(argv)
    if args.action == "sync":
        for nb in sync():
            print(f"wrote {nb.relative_to(ROOT)}")
        return 0
    problems = stale_notebooks()
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print("run: python -m coursekit.notebooks sync", file=sys.stderr)
        return 1
    print(f"{len(paired_notebooks())} paired notebooks in sync")
    return 0


if __name__ == "__main__":
    sys.exit(main())
