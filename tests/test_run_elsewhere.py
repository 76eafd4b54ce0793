"""Running a notebook outside the clone (issue 27): the install cell every notebook starts with,
the Colab button that only a repository URL turns on, and the summary cell of the exercises."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import ROOT
from coursekit.grader import tasks
from coursekit.notebooks import INSTALL_TAG, install_cell, repository_url, with_install_cell

URL = "https://github.com/example/course"


def _notebooks() -> list[Path]:
    return sorted(p for folder in ("book", "solutions", "exercises")
                  for p in (ROOT / folder).glob("*.ipynb"))


def test_every_notebook_starts_with_the_install_cell():
    notebooks = _notebooks()
    assert len(notebooks) >= 30
    url = repository_url(ROOT)
    for path in notebooks:
        first = json.loads(path.read_text(encoding="utf-8"))["cells"][0]
        assert INSTALL_TAG in first["metadata"]["tags"], path.name
        assert "".join(first["source"]) == install_cell(url)["source"], path.name


def test_the_exercises_folder_holds_one_file_per_exercise():
    files = sorted(p.name for p in (ROOT / "exercises").iterdir() if not p.name.startswith("."))
    assert files and all(name.endswith(".ipynb") for name in files), files


def _run(source: str, monkeypatch, missing: bool) -> list:
    calls = []
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if missing and name == "coursekit" else real(name))
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: calls.append(cmd))
    exec(compile(source, "<install cell>", "exec"), {})  # noqa: S102 - the course's own cell
    return calls


def test_the_install_cell_installs_from_the_repository_only_when_missing(monkeypatch):
    source = install_cell(URL)["source"]
    assert not any(line.lstrip().startswith(("%", "!")) for line in source.splitlines()), \
        "plain Python: the grader runs cells without IPython's magics"
    assert _run(source, monkeypatch, missing=False) == []
    assert _run(source, monkeypatch, missing=True) == [
        [sys.executable, "-m", "pip", "install", "--quiet", f"coursekit @ git+{URL}"]]
    with pytest.raises(ModuleNotFoundError, match="pip install /path/to/a/copy"):
        _run(install_cell("")["source"], monkeypatch, missing=True)


def test_with_install_cell_replaces_an_earlier_one():
    notebook = {"nbformat": 4, "nbformat_minor": 5, "metadata": {},
                "cells": [{"cell_type": "markdown", "id": "a", "metadata": {}, "source": "# T"}]}
    once = with_install_cell(notebook, "")
    twice = with_install_cell(once, URL)
    assert [c["id"] for c in twice["cells"]] == ["coursekit-install", "a"]
    assert f"git+{URL}" in "".join(twice["cells"][0]["source"])


def test_repository_url_is_one_setting(tmp_path):
    assert repository_url(tmp_path) == ""
    (tmp_path / "_config.yml").write_text(f"repository:\n  url: {URL}/\n", encoding="utf-8")
    assert repository_url(tmp_path) == URL
    (tmp_path / "_config.yml").write_text("repository:\n  url: example.org\n", encoding="utf-8")
    with pytest.raises(ValueError, match="is not https://HOST/OWNER/REPO"):
        repository_url(tmp_path)


def _launch_options(tmp_path, url: str) -> dict:
    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    try:
        import launch
    finally:
        sys.path.remove(str(ROOT / "book" / "_ext"))
    (tmp_path / "_config.yml").write_text(f"repository:\n  url: '{url}'\n", encoding="utf-8")
    config = SimpleNamespace(html_theme_options={
        "repository_url": "https://github.com/executablebooks/jupyter-book",
        "launch_buttons": {"colab_url": "https://colab.research.google.com"}})
    launch._configure(SimpleNamespace(srcdir=str(tmp_path)), config)
    return config.html_theme_options


def test_the_colab_button_needs_a_repository_url(tmp_path):
    assert _launch_options(tmp_path, "")["launch_buttons"]["colab_url"] == ""
    options = _launch_options(tmp_path, URL)
    assert options["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert options["repository_url"] == URL


def test_summary_reports_every_task_of_the_exercise(capsys, monkeypatch):
    monkeypatch.setattr(tasks, "_CHECKED", {})
    ids = [t["id"] for t in json.loads(
        (tasks.PUBLIC / "03_vae.json").read_text(encoding="utf-8"))["tasks"]]
    tasks._CHECKED[ids[0]] = (1, 1)
    if len(ids) > 1:
        tasks._CHECKED[ids[1]] = (0, 2)
    result = tasks.summary("03_vae")
    out = capsys.readouterr().out
    assert list(result) == ids and result[ids[0]] == (1, 1)
    assert "1 of 1 public check passed" in out and "0 of 2 public checks passed" in out
    assert out.count("not attempted yet") == len(ids) - 2
    assert f"every public check passed in 1 of {len(ids)} tasks" in out
    with pytest.raises(ValueError, match="unknown exercise"):
        tasks.summary("99_nothing")


def test_sync_twice_keeps_cell_ids_unique(tmp_path):
    from coursekit.notebooks import stale_notebooks, sync

    (tmp_path / "book").mkdir()
    md = tmp_path / "book" / "01_x.md"
    md.write_text("---\njupytext:\n  formats: ipynb,md:myst\nkernelspec:\n  display_name: Python 3"
                  "\n  language: python\n  name: python3\n---\n\n# T\n\n```{code-cell} ipython3\n"
                  "x = 1\n```\n", encoding="utf-8")
    sync(tmp_path)
    sync(tmp_path)  # the second time, the .ipynb already starts with the install cell
    cells = json.loads(md.with_suffix(".ipynb").read_text(encoding="utf-8"))["cells"]
    ids = [c["id"] for c in cells]
    assert ids[0] == "coursekit-install" and len(set(ids)) == len(ids) == 3
    assert stale_notebooks(tmp_path) == []
