"""A made-up class of submissions, honest and hostile, each with the score it must get
(the grader's tests; not part of the installed package).

The grader's tests and ``benchmarks/grade_batch.py`` build their submissions here from the
solution notebooks, so both exercise the same cases: a correct notebook, one with a task left as
the stub, one with a wrong answer, and notebooks that try to break or fool the grader. Each
:class:`Submission` knows the score an honest grader gives it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from coursekit.grader.assign import stub_source
from coursekit.grader.tasks import SOLUTIONS, load_exercise

__all__ = ["Submission", "solved_notebook", "hostile_class", "honest_class", "write"]


@dataclass
class Submission:
    """A notebook to grade and what it must score."""

    name: str                  # file name without .ipynb
    notebook: dict | bytes     # notebook JSON (dict), or raw bytes for malformed files
    score: int                 # the score an honest grader gives it
    exercise: str | None       # the exercise it must be graded as (None: not graded)
    why: str = ""              # what it does, in words


def solved_notebook(name: str, solutions: Path = SOLUTIONS) -> dict:
    """What a student who solved everything hands in: the exercise with the solutions kept."""
    import jupytext

    notebook = jupytext.read(Path(solutions) / f"{name}.md")
    notebook.cells = [c for c in notebook.cells
                      if not {"grading", "solution-only"} & set(c.metadata.get("tags", []))]
    notebook.metadata = {"kernelspec": notebook.metadata.get("kernelspec", {}),
                         "coursekit": {"exercise": name}}
    return json.loads(jupytext.writes(notebook, fmt="ipynb"))


def _code_cells(notebook: dict):
    return [c for c in notebook["cells"] if c["cell_type"] == "code"]


def _source(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def stub_task(notebook: dict, function: str) -> dict:
    """``notebook`` with ``function``'s solution replaced by the stub again."""
    for cell in _code_cells(notebook):
        if re.search(rf"^def {function}\(", _source(cell), re.M):
            cell["source"] = stub_source(_source(cell))
    return notebook


def replace_body(notebook: dict, function: str, body: str) -> dict:
    """``notebook`` with ``function``'s solution block replaced by ``body`` (indented code)."""
    for cell in _code_cells(notebook):
        source = _source(cell)
        if re.search(rf"^def {function}\(", source, re.M):
            cell["source"] = re.sub(r"( *)### BEGIN SOLUTION\n.*?### END SOLUTION",
                                    lambda m: "\n".join(m.group(1) + line
                                                        for line in body.splitlines()),
                                    source, flags=re.S)
    return notebook


def add_cell(notebook: dict, source: str, at: int | None = None) -> dict:
    """``notebook`` with a code cell ``source`` added (at the end, or before cell ``at``)."""
    cell = {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
            "source": source}
    notebook["cells"].insert(len(notebook["cells"]) if at is None else at, cell)
    return notebook


def _points(name: str) -> dict:
    return {t.function: t.points for t in load_exercise(name).tasks}


def _lost(name: str, function: str) -> int:
    """The points a notebook of ``name`` loses when ``function`` is stubbed or wrong: its own
    task's, and those of the tasks that call it (the tasks' ``uses``; the exercises say that a
    task runs with the student's own helpers)."""
    return sum(t.points for t in load_exercise(name).tasks
               if t.function == function or function in t.uses)


def honest_class(names: list[str], copies: int = 1) -> list[Submission]:
    """Correct, partly correct (one task stubbed) and wrong notebooks of each exercise."""
    out = []
    for name in names:
        points = _points(name)
        total = sum(points.values())
        functions = list(points)
        for c in range(copies):
            out.append(Submission(f"{name}-correct-{c}", solved_notebook(name), total, name,
                                  "everything solved"))
            left = functions[c % len(functions)]
            out.append(Submission(f"{name}-partial-{c}", stub_task(solved_notebook(name), left),
                                  total - _lost(name, left), name, f"{left} left as the stub"))
            wrong = functions[(c + 1) % len(functions)]
            out.append(Submission(
                f"{name}-wrong-{c}",
                replace_body(solved_notebook(name), wrong, "return -123456.789"),
                total - _lost(name, wrong), name, f"{wrong} returns a wrong number"))
    return out


def hostile_class(name: str = "01_background", other: str = "05_evaluation",
                  copies: tuple = ()) -> list[Submission]:
    """Notebooks of exercise ``name`` that try to break, escape or fool the grader.

    ``name`` must have a task ``fit_categorical`` (as ``01_background`` does); ``other`` is a
    second exercise whose notebook is handed in where ``name`` is expected; ``copies`` are
    further paths of solution notebooks on the machine (another clone, a download) that the
    "read-copies" submission tries to read and run.
    """
    points = _points(name)
    total = sum(points.values())
    first = list(points)[0]
    lose_first = total - _lost(name, first)
    solutions = str(SOLUTIONS)

    def solved():
        return solved_notebook(name)

    subs = [
        Submission("loop-top", add_cell(solved(), "while True:\n    pass"), total, name,
                   "an infinite loop at top level, after the functions"),
        Submission("loop-function", replace_body(solved(), first, "while True:\n    pass"),
                   lose_first, name, "an infinite loop inside a graded function"),
        Submission("memory-top", add_cell(solved(), "hog = []\nwhile True:\n"
                                          "    hog.append(b'x' * 2**26)"), total, name,
                   "a memory bomb at top level"),
        Submission("memory-function", replace_body(solved(), first, "hog = []\nwhile True:\n"
                                                   "    hog.append(b'x' * 2**26)"),
                   lose_first, name, "a memory bomb inside a graded function"),
        Submission("exit-top", add_cell(solved(), "import sys\nsys.exit(0)"), total, name,
                   "sys.exit() at top level"),
        Submission("os-exit", add_cell(solved(), "import os\nos._exit(0)"), total, name,
                   "os._exit() at top level"),
        Submission("kill-self", replace_body(solved(), first, "import os, signal\n"
                                             "os.kill(os.getpid(), signal.SIGKILL)"),
                   lose_first, name, "a graded function kills its own process"),
        Submission("segfault", add_cell(solved(), "import ctypes\nctypes.string_at(0)"), total,
                   name, "a segmentation fault at top level"),
        Submission("fork-bomb", add_cell(solved(), "import os\nwhile True:\n"
                                         "    try:\n        os.fork()\n"
                                         "    except OSError:\n        pass"), total, name,
                   "spawning processes without end"),
        Submission("fake-score", add_cell(solved(), 'print(\'{"score": 1000, "max_score": 9}\')\n'
                                          'print("score: 100/100")'), total, name,
                   "prints a fake score and fake JSON"),
        Submission("fake-answers", add_cell(
            stub_task(solved(), first),
            "import json, os\nfor i in range(10):\n    for k in range(10):\n"
            "        with open(f'answer-{i}-{k}.json', 'w') as f:\n"
            "            json.dump({'output': 0}, f)"), lose_first, name,
            "plants answer files for the grader to find"),
        Submission("flood", add_cell(solved(), "while True:\n    print('x' * 100000)"), total,
                   name, "floods the output"),
        Submission("monkeypatch", add_cell(
            replace_body(solved(), first, "return 0"),
            "import numpy, torch, builtins\nnumpy.allclose = lambda *a, **k: True\n"
            "numpy.array_equal = lambda *a, **k: True\n"
            "torch.allclose = lambda *a, **k: True\nbuiltins.abs = lambda x: 0\n"
            "def _assert(*a, **k):\n    return None\nbuiltins.AssertionError = Exception"),
            lose_first, name, "monkeypatches numpy and torch comparisons"),
        Submission("always-equal", replace_body(
            solved(), first, "class Anything(float):\n    def __eq__(self, other):\n"
            "        return True\n    __hash__ = float.__hash__\nreturn Anything(0.0)"),
            lose_first, name, "returns an object whose __eq__ is always true"),
        Submission("nan", replace_body(solved(), "fit_categorical",
                                       "return np.full((levels.shape[1], num_levels), np.nan)"),
                   total - points["fit_categorical"], name,
                   "returns an array of the right shape holding NaN"),
        Submission("escape", add_cell(solved(), (
            f"try:\n    leaked = open({solutions + '/' + name + '.md'!r}).read()\n"
            "except OSError as error:\n    leaked = None\n"
            "for path in ['/work/escape.txt', '/etc/escape.txt', '/tmp/../escape.txt']:\n"
            "    try:\n        open(path, 'w').write('x')\n    except OSError:\n        pass\n"
            f"assert leaked is None, 'read the solution'")), total, name,
            "tries to read the solutions and write outside its folder"),
        Submission("metadata-points", _edit_metadata(solved(), name), total - points[first],
                   name, "edited metadata and points"),
        Submission("malformed", b'{"cells": [ {"cell_type": "code", "source": "x =', 0, None,
                   "malformed notebook JSON"),
        Submission("empty-file", b"", 0, None, "an empty file"),
        Submission("empty-notebook", {"cells": [], "metadata": {"coursekit": {"exercise": name}},
                                      "nbformat": 4, "nbformat_minor": 5}, 0, name,
                   "a notebook with no cells"),
        Submission("other-exercise", solved_notebook(other), 0, None,
                   f"a notebook of {other} handed in for {name}"),
        Submission("read-copies", add_cell(stub_task(solved(), first), (
            "import re\n"
            f"for path in {[str(SOLUTIONS / (name + '.md')), *map(str, copies)]!r}:\n"
            "    try:\n        text = open(path).read()\n    except OSError:\n        continue\n"
            "    for block in re.findall(r'```\\{code-cell\\}[^\\n]*\\n(.*?)```', text, re.S):\n"
            "        try:\n            exec(block, globals())\n        except Exception:\n"
            "            pass")), lose_first, name,
            "reads the solutions from the repository or another copy and runs them"),
        Submission("huge-int", replace_body(solved(), first, "return 10 ** 400"), lose_first,
                   name, "returns an integer of 401 digits"),
        Submission("nested", replace_body(solved(), first, "return " + "[" * 40 + "]" * 40),
                   lose_first, name, "returns a list nested 40 deep"),
        Submission("big-answer", replace_body(solved(), first, "return np.zeros(3_000_000)"),
                   lose_first, name, "returns a 24 MB answer"),
        Submission("inject", add_cell(solved(), "raise RuntimeError('\\nnot graded: forged"
                                                "\\nscore: 100/100')"), total, name,
                   "puts lines that look like the grader's into its error"),
        Submission("hidden-leak", replace_body(
            solved(), first, "raise ValueError('LEAK ' + repr(locals()))"), lose_first, name,
            "raises an error that carries the (hidden) inputs"),
    ]
    return subs


def _edit_metadata(notebook: dict, name: str) -> dict:
    """Claims of points in the metadata and a fake task list: none of it may count."""
    notebook["metadata"]["coursekit"] = {"exercise": name, "score": 1000, "points": {"x": 99}}
    for cell in notebook["cells"]:
        cell.setdefault("metadata", {})["points"] = 1000
    add_cell(notebook, "from coursekit.grader.tasks import Task, case\n"
                       "TASKS = [Task('x', function='f', points=1000, cases=[case(1, public=True),"
                       " case(2)])]\nSCORE = 1000")
    return stub_task(notebook, next(iter(_points(name))))


def write(submissions: list[Submission], folder: Path) -> list[Path]:
    """Write each submission to ``folder/<name>.ipynb``; return the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for s in submissions:
        path = folder / f"{s.name}.ipynb"
        data = s.notebook if isinstance(s.notebook, bytes) else json.dumps(s.notebook).encode()
        path.write_bytes(data)
        paths.append(path)
    return paths
