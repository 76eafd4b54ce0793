"""Graded tasks: how a solution notebook declares them, how answers are judged, and ``check()``.

An exercise is written once, as a solution notebook ``solutions/NN_topic.md``. Its functions hold
the reference code between ``### BEGIN SOLUTION`` and ``### END SOLUTION``, and one code cell
tagged ``grading`` declares the graded tasks::

    from coursekit.grader.tasks import Task, case
    TASKS = [Task("vae_kl", function="gaussian_kl", points=2, torch=True,
                  cases=[case(mu, logvar, public=True), case(mu2, logvar2)])]

Each case's inputs are plain data (numbers, strings, lists, numpy arrays); the grader sends them
to the student's process, gets plain data back, and compares it here, in its own process, with
what the reference solution returned for the same inputs (:func:`compare`). Public cases, with
their expected answers, are written by ``python -m coursekit assign`` to
``coursekit/grader/public/NN_topic.json`` so that :func:`check` gives feedback inside the
notebook; the other cases stay in the solution notebook, which students do not have.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Case", "Task", "Exercise", "case", "compare", "check", "load_exercise",
           "exercise_names", "SOLUTIONS", "PUBLIC"]

ROOT = Path(__file__).resolve().parents[2]
SOLUTIONS = ROOT / "solutions"
PUBLIC = Path(__file__).resolve().parent / "public"
NAME = re.compile(r"^\d\d_[a-z0-9_]+$")


@dataclass
class Case:
    """One call of a graded function."""

    args: tuple                                   # positional inputs, plain data
    kwargs: dict = field(default_factory=dict)    # keyword inputs, plain data
    public: bool = False                          # shown to students through check()


def case(*args, public: bool = False, **kwargs) -> Case:
    """A :class:`Case` calling the function with ``args`` and ``kwargs``."""
    return Case(args=tuple(args), kwargs=dict(kwargs), public=public)


@dataclass
class Task:
    """A graded task: a function the student writes, its points, and the cases that test it."""

    id: str                        # unique in the course; check("id", f) and grades.csv use it
    function: str                  # the name the notebook must define
    points: int                    # all of them for passing every case, none otherwise
    cases: list                    # Case objects; at least one public and one hidden
    title: str = ""                # one line for the feedback
    rtol: float = 1e-4             # relative tolerance of numeric answers
    atol: float = 1e-5             # absolute tolerance of numeric answers
    torch: bool = False            # turn array inputs into torch tensors before the call
    driver: str | None = None      # a function of coursekit.grader.drivers that makes the call
    differentiable: bool = False   # the answer must be a torch tensor that carries a gradient
    hint: str = ""                 # shown when a hidden case fails (never the inputs or the error)

    def __post_init__(self):
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.id):
            raise ValueError(f"task id must be lower_snake_case, got {self.id!r}")
        if not isinstance(self.points, int) or self.points <= 0:
            raise ValueError(f"task {self.id!r}: points must be a positive integer, got "
                             f"{self.points!r}")
        if not any(c.public for c in self.cases) or all(c.public for c in self.cases):
            raise ValueError(f"task {self.id!r} needs at least one public and one hidden case")

    def spec(self) -> dict:
        """What the sandboxed process needs to make the calls (no expected answers)."""
        from coursekit.grader.worker import encode

        return {"id": self.id, "function": self.function, "torch": self.torch,
                "driver": self.driver,
                "cases": [{"args": encode(tuple(c.args)), "kwargs": encode(dict(c.kwargs))}
                          for c in self.cases]}


@dataclass
class Exercise:
    """A solution notebook, parsed: its code cells and its graded tasks."""

    name: str                      # "03_vae": the file name without extension
    title: str                     # the first heading
    tasks: list                    # Task objects, in the notebook's order
    cells: list                    # the code cells of the solution, without the grading cell
    path: Path                     # the solution notebook's .md file

    @property
    def max_score(self) -> int:
        return sum(t.points for t in self.tasks)


def exercise_names(solutions: Path = SOLUTIONS) -> list[str]:
    """The exercises that exist: the ``NN_topic.md`` files of ``solutions/``."""
    return sorted(p.stem for p in Path(solutions).glob("*.md") if NAME.match(p.stem))


def load_exercise(name: str, solutions: Path = SOLUTIONS) -> Exercise:
    """Parse ``solutions/<name>.md`` and run its grading cell (trusted code) to get the tasks.

    Raises:
        ValueError: no such exercise, no grading cell, or a malformed task list.
    """
    import jupytext

    path = Path(solutions) / f"{name}.md"
    if not NAME.match(name) or not path.exists():
        raise ValueError(f"unknown exercise {name!r}; known: {exercise_names(solutions)}")
    notebook = jupytext.read(path)
    cells, grading = [], []
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        (grading if "grading" in cell.metadata.get("tags", []) else cells).append(cell.source)
    if len(grading) != 1:
        raise ValueError(f"{path} must have exactly one code cell tagged 'grading', "
                         f"found {len(grading)}")
    namespace: dict = {"__name__": f"coursekit_grading_{name}"}
    exec(compile(grading[0], f"{path}:grading", "exec"), namespace)  # noqa: S102 - our own file
    tasks = namespace.get("TASKS")
    if not isinstance(tasks, list) or not tasks or not all(isinstance(t, Task) for t in tasks):
        raise ValueError(f"the grading cell of {path} must define TASKS, a list of Task")
    ids = [t.id for t in tasks]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: task ids repeat: {ids}")
    title = next((line.lstrip("# ").strip() for c in notebook.cells if c.cell_type == "markdown"
                  for line in c.source.splitlines() if line.startswith("# ")), name)
    return Exercise(name=name, title=title, tasks=tasks, cells=cells, path=path)


# ------------------------------------------------------------------------------------- judging

def _describe(value) -> str:
    import numpy as np

    if isinstance(value, np.ndarray):
        return f"an array of shape {tuple(value.shape)} ({value.dtype})"
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of length {len(value)}"
    return f"{type(value).__name__} {value!r}"[:80]


def compare(expected, got, rtol: float = 1e-4, atol: float = 1e-5, *, reveal: bool = True,
            where: str = "the answer") -> str | None:
    """``None`` when ``got`` matches ``expected`` (plain data), else a sentence saying how not.

    Numbers and arrays must have the expected shape, hold no NaN or infinity where the
    expected value is finite, and agree within ``|got - expected| <= atol + rtol * |expected|``.
    Strings, booleans and dictionary keys must be equal. ``reveal`` adds the expected values
    (for public cases only).

    Example:
        >>> import numpy as np
        >>> compare(np.array([1.0, 2.0]), [1.0, 2.0]) is None
        True
        >>> compare(1.0, float("nan"))
        'the answer is NaN or infinite where 1 was expected'
    """
    import numpy as np

    if isinstance(expected, dict):
        if not isinstance(got, dict):
            return f"{where} should be a dict with keys {sorted(expected)}, got {_describe(got)}"
        if set(got) != set(expected):
            return f"{where} has keys {sorted(got)}, expected {sorted(expected)}"
        for key in expected:
            message = compare(expected[key], got[key], rtol, atol, reveal=reveal,
                              where=f"{where}[{key!r}]")
            if message:
                return message
        return None
    if isinstance(expected, str):
        if got != expected or not isinstance(got, str):
            return f"{where} is {_describe(got)}" + (f", expected {expected!r}" if reveal else "")
        return None
    if isinstance(expected, (list, tuple)) and not _numeric(expected):
        if not isinstance(got, (list, tuple)) or len(got) != len(expected):
            return f"{where} should be a sequence of length {len(expected)}, got {_describe(got)}"
        for i, (e, g) in enumerate(zip(expected, got)):
            message = compare(e, g, rtol, atol, reveal=reveal, where=f"{where}[{i}]")
            if message:
                return message
        return None
    # numbers and arrays
    if not _numeric(got):
        return f"{where} should be numeric, got {_describe(got)}"
    e, g = np.asarray(expected), np.asarray(got)
    if e.shape != g.shape:
        if e.size == 1 and g.size == 1:
            g = g.reshape(e.shape)
        else:
            return f"{where} has shape {tuple(g.shape)}, expected shape {tuple(e.shape)}"
    if e.dtype == bool or g.dtype == bool:
        if e.dtype != g.dtype or not np.array_equal(e, g):
            return f"{where} is {_short(g)}" + (f", expected {_short(e)}" if reveal else
                                                 " (booleans differ)")
        return None
    e, g = e.astype(np.float64), g.astype(np.float64)
    bad = ~np.isfinite(g) & np.isfinite(e)
    if bad.any():
        return f"{where} is NaN or infinite where {_short(e[bad].ravel()[0])} was expected" \
            if reveal else f"{where} holds NaN or infinite values where finite ones were expected"
    if not np.array_equal(np.isnan(e), np.isnan(g)) or not np.array_equal(
            np.isinf(e) & (e > 0), np.isinf(g) & (g > 0)):
        return f"{where} is finite where the expected value is not"
    finite = np.isfinite(e)
    with np.errstate(invalid="ignore"):
        error = np.where(finite, np.abs(g - e), 0.0)
    wrong = finite & (error > atol + rtol * np.abs(e))
    if wrong.any():
        index = np.unravel_index(int(np.argmax(np.where(wrong, error, -1))), e.shape)
        at = f" at index {tuple(int(i) for i in index)}" if e.ndim else ""
        detail = (f": got {_short(g[index])}, expected {_short(e[index])}" if reveal else
                  f" (largest error {float(error[index]):.3g})")
        return f"{where} is wrong{at}{detail}; {int(wrong.sum())} of {e.size} values differ"
    return None


def _numeric(value) -> bool:
    import numpy as np

    if isinstance(value, bool) or isinstance(value, (int, float, np.number, np.bool_)):
        return True
    if isinstance(value, np.ndarray):
        return value.dtype.kind in "biuf"
    if isinstance(value, (list, tuple)) and value:
        try:
            return np.asarray(value).dtype.kind in "biuf"
        except (ValueError, TypeError):
            return False
    return False


def _short(value) -> str:
    import numpy as np

    value = np.asarray(value)
    if value.size == 1:
        number = value.item()
        return f"{number:.6g}" if isinstance(number, float) else repr(number)
    return np.array2string(value, precision=4, threshold=8)


# ----------------------------------------------------------------------- feedback in the notebook

def _public_task(task_id: str) -> dict:
    for path in sorted(PUBLIC.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        for task in data["tasks"]:
            if task["id"] == task_id:
                return task
    known = sorted(t["id"] for p in PUBLIC.glob("*.json")
                   for t in json.loads(p.read_text(encoding="utf-8"))["tasks"])
    raise ValueError(f"unknown task {task_id!r}; the tasks are {known}")


def check(task_id: str, function) -> bool | None:
    """Run the public checks of task ``task_id`` on ``function`` now, and print what they found.

    This is feedback only: the grade comes from ``python -m coursekit grade``, which runs more
    (hidden) cases in a separate process. While a notebook is being graded, this does nothing.

    Returns:
        ``True`` when every public check passed, ``False`` when one failed, ``None`` when the
        task is not attempted yet (the function still raises ``NotImplementedError``) or the
        notebook is being graded.

    Example:
        >>> check("psnr", lambda x, y, data_range: 0.0)
        psnr: PSNR: check 1 failed: the answer is wrong: got 0, expected 24.7712; 1 of 1 values differ
        psnr: PSNR: check 2 failed: the answer is finite where the expected value is not
        False
    """
    if os.environ.get("COURSEKIT_GRADING") == "1":
        print(f"{task_id}: (checks run by the grader)")
        return None
    from coursekit.grader.worker import decode

    task = _public_task(task_id)
    driver = None
    if task.get("driver"):
        from coursekit.grader import drivers as driver_module

        driver = getattr(driver_module, task["driver"])
    header = f"{task_id}: {task['title']}" if task.get("title") else task_id
    failures = 0
    for k, public in enumerate(task["cases"]):
        args, kwargs = decode(public["args"]), decode(public["kwargs"])
        if task.get("torch"):
            from coursekit.grader.worker import _to_torch

            args, kwargs = _to_torch(args), _to_torch(kwargs)
        try:
            answer = driver(function, *args, **kwargs) if driver else function(*args, **kwargs)
        except NotImplementedError:
            print(f"{header}: not attempted yet (the function raises NotImplementedError)")
            return None
        except Exception as error:  # noqa: BLE001 - the student's error, reported in words
            print(f"{header}: check {k + 1} failed: calling {task['function']} raised "
                  f"{type(error).__name__}: {error}")
            failures += 1
            continue
        try:
            from coursekit.grader.worker import encode

            got = decode(json.loads(json.dumps(encode(answer))))
        except TypeError as error:
            print(f"{header}: check {k + 1} failed: {error}")
            failures += 1
            continue
        message = compare(decode(public["expected"]), got, task["rtol"], task["atol"])
        if message:
            print(f"{header}: check {k + 1} failed: {message}")
            failures += 1
    if failures == 0:
        print(f"{header}: all {len(task['cases'])} public checks passed "
              f"(the grader also runs hidden ones)")
    return failures == 0
