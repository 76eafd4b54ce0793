"""Keeping each MyST-markdown notebook and its paired ``.ipynb`` in step (authoring tool).

The ``.md`` file is the source of truth; its ``.ipynb`` twin exists so that readers can open the
chapter in Jupyter and so that nbval can execute it. ``python -m coursekit.notebooks sync`` brings
every twin up to date (``jupytext --to ipynb --update``); ``python -m coursekit.notebooks check``
exits 1, naming the files, when any twin differs from what ``sync`` would write.

Every notebook a reader can open outside a clone (the ``.ipynb`` twins that Colab opens from the
repository, the exercise notebooks, the executed notebooks the book offers for download) starts
with :func:`install_cell`: a cell that installs ``coursekit`` from the repository when it is
missing, and does nothing where it is installed. The repository's URL is the one setting
``repository: url:`` of ``_config.yml``; without one the cell says how to install from a copy.
The cell is the first cell of the ``.md`` source too (``sync`` writes it there), so a source
and its twin hold the same cells; it is tagged ``remove-cell``, so the book's pages hide it.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["paired_notebooks", "stale_notebooks", "sync", "main", "repository_url",
           "install_cell", "with_install_cell", "with_install_cell_md"]

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


INSTALL_TAG = "coursekit-install"
INSTALL_ID = "coursekit-install"


def repository_url(root: Path = ROOT) -> str:
    """The course's public repository URL, ``repository: url:`` in ``_config.yml`` ("" if unset).

    Example:
        >>> repository_url(Path("/nonexistent"))
        ''
    """
    config = Path(root) / "_config.yml"
    if not config.exists():
        return ""
    import yaml

    settings = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    url = str((settings.get("repository") or {}).get("url") or "").strip().rstrip("/")
    if url and not re.fullmatch(r"https://[\w.-]+/[\w.-]+/[\w.-]+", url):
        raise ValueError(f"_config.yml: repository url {url!r} is not https://HOST/OWNER/REPO")
    return url


def install_cell(url: str) -> dict:
    """The notebook cell that installs ``coursekit`` when the kernel lacks it.

    Plain Python (no ``%pip``), so the grader's kernel, which runs cells as Python, accepts it;
    where ``coursekit`` imports, it does nothing.

    Example:
        >>> cell = install_cell("https://github.com/example/course")
        >>> "git+https://github.com/example/course" in cell["source"], cell["id"]
        (True, 'coursekit-install')
        >>> "raise ModuleNotFoundError" in install_cell("")["source"]
        True
    """
    lines = ["# Colab, or a Jupyter without the course's package: install coursekit first.",
             "# (Where coursekit is installed, as in a clone, this does nothing.)",
             "import importlib.util", "", 'if importlib.util.find_spec("coursekit") is None:']
    if url:
        lines += ["    import subprocess", "    import sys", "",
                  '    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet",',
                  f'                    "coursekit @ git+{url}"], check=True)']
    else:
        lines += ['    raise ModuleNotFoundError(',
                  '        "this notebook needs the course\'s package coursekit: "',
                  '        "pip install /path/to/a/copy/of/the/course")']
    return {"cell_type": "code", "execution_count": None, "id": INSTALL_ID,
            "metadata": {"tags": [INSTALL_TAG, "remove-cell"]}, "outputs": [],
            "source": "\n".join(lines)}


def with_install_cell(notebook: dict, url: str) -> dict:
    """``notebook`` (nbformat's JSON as a dict) with :func:`install_cell` as its first cell,
    replacing an earlier one."""
    cells = [c for c in notebook["cells"]
             if INSTALL_TAG not in c.get("metadata", {}).get("tags", [])]
    cell = install_cell(url)
    cell["source"] = cell["source"].splitlines(keepends=True)  # as nbformat writes it
    if notebook.get("nbformat_minor", 0) < 5 or notebook.get("nbformat", 4) < 4:
        cell.pop("id")
    return {**notebook, "cells": [cell, *cells]}


_MD_INSTALL = re.compile(
    r"```\{code-cell\} ipython3\n:tags: \[coursekit-install[^\n]*\n.*?\n```\n\n", re.S)


def with_install_cell_md(text: str, url: str) -> str:
    r"""A MyST notebook's text with :func:`install_cell` as its first cell, right after the front
    matter, replacing an earlier one: the ``.md`` source and its ``.ipynb`` hold the same cells.

    Example:
        >>> text = "---\njupytext: {}\n---\n\n# Title\n"
        >>> once = with_install_cell_md(text, "")
        >>> with_install_cell_md(once, "") == once, once.count("coursekit-install")
        (True, 1)
    """
    text = _MD_INSTALL.sub("", text)
    end = text.index("\n---\n", 4) + 5 if text.startswith("---\n") else 0
    cell = install_cell(url)
    block = (f"```{{code-cell}} ipython3\n:tags: [{', '.join(cell['metadata']['tags'])}]\n\n"
             f"{cell['source']}\n```\n\n")
    return text[:end] + "\n" + block + text[end:].lstrip("\n")


def _jupytext_update(md: Path, url: str) -> None:
    nb = md.with_suffix(".ipynb")
    source = md.read_text(encoding="utf-8")
    with_cell = with_install_cell_md(source, url)
    if with_cell != source:
        md.write_text(with_cell, encoding="utf-8")
    if nb.exists():  # without the install cell, so that jupytext pairs the cells as before
        notebook = json.loads(nb.read_text(encoding="utf-8"))
        cells = [c for c in notebook["cells"]
                 if INSTALL_TAG not in c.get("metadata", {}).get("tags", [])]
        if len(cells) < len(notebook["cells"]):
            nb.write_text(json.dumps({**notebook, "cells": cells}, indent=1, sort_keys=True,
                                     ensure_ascii=False) + "\n", encoding="utf-8")
    subprocess.run([sys.executable, "-m", "jupytext", "--quiet", "--to", "ipynb", "--update",
                    str(md)], check=True)
    notebook = json.loads(nb.read_text(encoding="utf-8"))
    notebook = with_install_cell(notebook, url)
    nb.write_text(json.dumps(notebook, indent=1, sort_keys=True, ensure_ascii=False) + "\n",
                  encoding="utf-8")


def stale_notebooks(root: Path = ROOT) -> list[str]:
    """Problems with the pairs: a missing ``.ipynb``, or one that ``sync`` would change."""
    problems, url = [], repository_url(root)
    for md in paired_notebooks(root):
        nb = md.with_suffix(".ipynb")
        if not nb.exists():
            problems.append(f"{nb.relative_to(root)} is missing")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            md_copy, nb_copy = Path(tmp) / md.name, Path(tmp) / nb.name
            shutil.copy(md, md_copy)
            shutil.copy(nb, nb_copy)
            _jupytext_update(md_copy, url)
            if nb_copy.read_bytes() != nb.read_bytes():
                problems.append(f"{nb.relative_to(root)} differs from {md.relative_to(root)}")
    return problems


def sync(root: Path = ROOT) -> list[Path]:
    """Write every paired ``.ipynb`` from its ``.md``; return the notebooks written."""
    written, url = [], repository_url(root)
    for md in paired_notebooks(root):
        _jupytext_update(md, url)
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
