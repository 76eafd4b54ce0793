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
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

__all__ = ["Case", "Task", "Exercise", "case", "compare", "check", "summary", "load_exercise",
           "exercise_names", "counted", "SOLUTIONS", "PUBLIC"]

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
    held_out: dict = field(default_factory=dict)  # the judge's inputs; never sent to the sandbox
    hint: str = ""                                # shown beside this case when it fails (else
                                                  # the task's hint, for a hidden case)


def case(*args, public: bool = False, held_out: dict | None = None, hint: str = "",
         **kwargs) -> Case:
    """A :class:`Case` calling the function with ``args`` and ``kwargs``; ``held_out`` goes to
    the task's judge only (see :mod:`coursekit.grader.judges`); ``hint`` is shown beside this
    case when it fails, never its inputs."""
    return Case(args=tuple(args), kwargs=dict(kwargs), public=public,
                held_out=dict(held_out or {}), hint=str(hint))


# What the sandboxed process is told of a task (Task.to_wire): only what it needs to make the
# calls. An allow-list, so that a field added to Task stays on the trusted side by default.
SANDBOX_FIELDS = ("id", "function", "torch", "driver", "differentiable")


@dataclass
class Task:
    """A graded task: a function the student writes, its points, and the cases that test it."""

    id: str                        # unique in the course; check("id", f) and grades.csv use it
    function: str                  # the name the notebook must define
    points: int                    # points x passed cases / cases (rounded to 0.01)
    cases: list                    # Case objects; at least one public and one hidden
    title: str = ""                # one line for the feedback
    rtol: float = 1e-4             # relative tolerance of numeric answers
    atol: float = 1e-5             # absolute tolerance of numeric answers
    torch: bool = False            # turn array inputs into torch tensors before the call
    driver: str | None = None      # a function of coursekit.grader.drivers that makes the call
    judge: str | None = None       # a function of coursekit.grader.judges that measures the
                                   # returned artefact in the grader (training tasks)
    differentiable: bool = False   # the answer must be a torch tensor that carries a gradient
    hint: str = ""                 # shown when a hidden case fails (never the inputs or the error)
    uses: tuple = ()               # other graded functions this one calls in the student's
                                   # notebook: a mistake in one of them can fail this task too

    def __post_init__(self):
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.id):
            raise ValueError(f"task id must be lower_snake_case, got {self.id!r}")
        if not isinstance(self.points, int) or self.points <= 0:
            raise ValueError(f"task {self.id!r}: points must be a positive integer, got "
                             f"{self.points!r}")
        if not any(c.public for c in self.cases) or all(c.public for c in self.cases):
            raise ValueError(f"task {self.id!r} needs at least one public and one hidden case")
        if self.judge is not None:
            from coursekit.grader.judges import JUDGES

            if self.judge not in JUDGES:
                raise ValueError(f"task {self.id!r}: unknown judge {self.judge!r}; judges are "
                                 f"{sorted(JUDGES)} (coursekit/grader/judges.py)")
        elif any(c.held_out for c in self.cases):
            raise ValueError(f"task {self.id!r}: cases have held_out inputs but no judge")

    def spec(self) -> dict:
        """What the sandboxed process needs to make the calls (no expected answers)."""
        return self.to_wire()

    def to_wire(self, expected: list | None = None) -> dict:
        """The task as JSON-ready data, built from its fields.

        ``expected`` None: what the sandboxed process needs to make the calls, the fields of
        ``SANDBOX_FIELDS`` and each case's inputs; no answer, no judge, no hint and none of a
        case's ``held_out`` inputs (they stay in the grader). A list of the reference's answers,
        one per public case: the public file's entry (every field but the grader's own
        ``cases`` and ``uses``), with the public cases and their answers, or, for a judged
        task, their ``held_out`` inputs (public data the student's checks judge locally).
        """
        from coursekit.grader.protocol import encode

        if expected is None:
            return {**{name: getattr(self, name) for name in SANDBOX_FIELDS},
                    "differentiable": bool(self.differentiable),
                    "cases": [{"args": encode(tuple(c.args)), "kwargs": encode(dict(c.kwargs)),
                               "public": bool(c.public)} for c in self.cases]}
        public = [c for c in self.cases if c.public]
        if len(expected) != len(public):
            raise ValueError(f"task {self.id!r}: {len(public)} public cases but "
                             f"{len(expected)} answers")
        head = {f.name: getattr(self, f.name) for f in fields(self)
                if f.name not in ("cases", "uses") and not (f.name == "judge" and not self.judge)}
        return {**head, "differentiable": bool(self.differentiable),
                "cases": [{"args": encode(tuple(c.args)), "kwargs": encode(dict(c.kwargs)),
                           **({"held_out": encode(dict(c.held_out))} if self.judge else
                              {"expected": encode(e)})} for c, e in zip(public, expected)]}


@dataclass
class Exercise:
    """A solution notebook, parsed: its code cells and its graded tasks."""

    name: str                      # "03_vae": the file name without extension
    title: str                     # the first heading
    tasks: list                    # Task objects, in the notebook's order
    cells: list                    # the code cells of the solution, without the grading cell
    path: Path                     # the solution notebook's .md file
    written: list = field(default_factory=list)  # Written tasks, marked by hand (written.py)
    variant: object = None         # VARIANT(seed) -> {task id: cases}, per student (variants.py)

    @property
    def max_score(self) -> int:
        return sum(t.points for t in self.tasks) + sum(w.points for w in self.written)


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
        tags = cell.metadata.get("tags", [])
        # a solution-only cell shows the book's reader something (a comparison, a figure); the
        # exercise leaves it out, so the reference's run in the grader does too
        if cell.cell_type != "code" or "solution-only" in tags:
            continue
        (grading if "grading" in tags else cells).append(cell.source)
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
    written = namespace.get("WRITTEN", [])
    from coursekit.grader.written import Written

    if not isinstance(written, list) or not all(isinstance(w, Written) for w in written):
        raise ValueError(f"the grading cell of {path}: WRITTEN must be a list of Written")
    ids += [w.id for w in written]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: task ids repeat: {ids}")
    title = next((line.lstrip("# ").strip() for c in notebook.cells if c.cell_type == "markdown"
                  for line in c.source.splitlines() if line.startswith("# ")), name)
    variant = namespace.get("VARIANT")
    if variant is not None and not callable(variant):
        raise ValueError(f"the grading cell of {path}: VARIANT must be a function of a seed")
    return Exercise(name=name, title=title, tasks=tasks, cells=cells, path=path,
                    written=written, variant=variant)


# ------------------------------------------------------------------------------------- judging

def compare(expected, got, rtol: float = 1e-4, atol: float = 1e-5, *, reveal: bool = True,
            where: str = "the answer") -> str | None:
    """``None`` when ``got`` matches ``expected``, else a sentence (see
    :func:`coursekit.grader.protocol.compare`, which this calls).

    Example:
        >>> compare(1.0, float("nan"))
        'the answer is NaN or infinite where 1 was expected'
    """
    from coursekit.grader.protocol import compare as _compare

    return _compare(expected, got, rtol, atol, reveal=reveal, where=where)


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
    A failing check shows the call, with its inputs, and what was wrong.

    Returns:
        ``True`` when every public check passed, ``False`` when one failed, ``None`` when the
        task is not attempted yet (the function still raises ``NotImplementedError``) or the
        notebook is being graded.

    Example:
        >>> check("psnr", lambda x, y, data_range: 0.0)  # doctest: +ELLIPSIS
        psnr: PSNR: check 1 failed: psnr(...): the answer is wrong: got 0, expected 24.7712; ...
        False
    """
    if os.environ.get("COURSEKIT_GRADING") == "1":
        print(f"{task_id}: (checks run by the grader)")
        return None
    from coursekit.grader import protocol
    from coursekit.grader.drivers import answer_names
    from coursekit.grader.variants import notebook_variant

    task = _public_task(task_id)
    variant = notebook_variant(task_id)
    if variant is not None:  # this student's own variant, written when it was released
        task = variant["public"][task_id]
    header = f"{task_id}: {task['title']}" if task.get("title") else task_id
    if variant is not None:
        header += f" (the variant of {variant.get('student')})"
    failures = 0
    for k, public in enumerate(task["cases"]):
        record = protocol.call_case(function, task, public)
        if record.get("code") == "not_attempted":
            print(f"{header}: not attempted yet (the function raises NotImplementedError)")
            return None
        if "output" in record:  # what the grader would receive: through the wire format
            record = {"output": json.loads(json.dumps(record["output"]))}
        if task.get("judge"):
            outcome = protocol.judge_artefact(task["judge"], protocol.decode(public["held_out"]),
                                              record, public=True)
        else:
            outcome = protocol.judge(protocol.decode(public["expected"]), record,
                                     rtol=task["rtol"], atol=task["atol"], public=True,
                                     names=answer_names(task.get("driver"), task["function"]))
        if not outcome.passed:
            call = protocol.describe_case(task["function"], task.get("driver"),
                                          protocol.decode(public["args"]),
                                          protocol.decode(public["kwargs"]))
            print(f"{header}: check {k + 1} failed: {call}: {outcome.message}")
            failures += 1
    n = len(task["cases"])
    _CHECKED[task_id] = (n - failures, n)
    if failures == 0:
        passed = "the public check passed" if n == 1 else f"all {n} public checks passed"
        print(f"{header}: {passed} (the grader also runs hidden ones)")
    return failures == 0


_CHECKED: dict[str, tuple[int, int]] = {}  # task id -> (public checks passed, public checks)


def counted(n, singular: str, plural: str | None = None) -> str:
    """``n`` and the noun, in the singular for exactly one.

    Example:
        >>> counted(1, "point"), counted(2.5, "point"), counted(0, "check")
        ('1 point', '2.5 points', '0 checks')
    """
    return f"{n} {singular if n == 1 else plural or singular + 's'}"


def summary(exercise: str) -> dict:
    """Print where each task of ``exercise`` stands after the ``check(...)`` cells run so far.

    The last cell of every exercise notebook calls it: one line per task (its points, and how
    many public checks passed, or that its check cell has not run or found it unfinished), then
    the total. Nothing is run again; run a task's check cell after changing the function.

    Returns:
        ``{task_id: (passed, public_checks) or None}``, ``None`` for a task not checked yet.
    """
    path = PUBLIC / f"{exercise}.json"
    if not path.exists():
        known = sorted(p.stem for p in PUBLIC.glob("*.json"))
        raise ValueError(f"unknown exercise {exercise!r}; the exercises are {known}")
    if os.environ.get("COURSEKIT_GRADING") == "1":
        print(f"{exercise}: (checks run by the grader)")
        return {}
    tasks = json.loads(path.read_text(encoding="utf-8"))["tasks"]
    result, done, points = {}, 0, 0
    width = max(len(t["id"]) for t in tasks)
    print(f"{exercise}: the public checks so far (the grader also runs hidden ones)")
    for task in tasks:
        state = _CHECKED.get(task["id"])
        result[task["id"]] = state
        if state is None:
            verdict = "not attempted yet, or its check cell has not run"
        else:
            verdict = f"{state[0]} of {counted(state[1], 'public check')} passed"
            if state[0] == state[1]:
                done += 1
                points += task["points"]
        print(f"  {task['id']:<{width}}  {counted(task['points'], 'point'):>9}  {verdict}")
    total = sum(t["points"] for t in tasks)
    print(f"every public check passed in {done} of {counted(len(tasks), 'task')} "
          f"({points} of {counted(total, 'point')})")
    return result
