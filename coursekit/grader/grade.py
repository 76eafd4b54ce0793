"""``python -m coursekit grade``: grade a class's notebooks, in parallel, in sandboxes.

For each submission the grader (this process) reads the notebook as JSON, finds its exercise
(the notebook's ``metadata.coursekit.exercise``, else a known exercise name in the file name),
runs its code cells and the graded calls in the sandbox (:mod:`coursekit.grader.sandbox`), and
judges the plain-data answers against the reference solution's answers to the same inputs, which
it computed once per exercise by running the solution notebook the same way. It writes
``OUT/<submission>.json`` per submission and ``OUT/grades.csv`` for the class.

Exit status: 0 when every submission was graded (zeros included), 2 when the grader itself
failed (for instance the reference solution did not run, or an output could not be written).

Hidden checks kept outside the repository: ``--checks DIR`` reads ``DIR/NN_topic.py``, Python
that defines ``CASES = {"task_id": [case(...), ...]}`` (``case`` is predefined); those cases are
added, hidden, to the task's cases. The folder is hidden from the submissions.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from coursekit.grader.sandbox import SLOTS_PER_GRADER, Limits, isolation, run_notebook
from coursekit.grader.tasks import SOLUTIONS, Exercise, case, compare, exercise_names, load_exercise

__all__ = ["configure", "run", "Grader", "identify", "read_code_cells"]

MAX_NOTEBOOK_BYTES = 20 * 2**20


class NotebookError(ValueError):
    """A submission that is not a readable notebook."""


def read_code_cells(data: bytes) -> tuple[list[str], dict]:
    """The code cells' sources and the metadata of notebook JSON ``data``.

    Raises:
        NotebookError: not JSON, or not shaped like a notebook (with what was wrong).
    """
    if not data.strip():
        raise NotebookError("the file is empty")
    try:
        notebook = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise NotebookError(f"the file is not valid notebook JSON ({error})") from None
    if not isinstance(notebook, dict) or not isinstance(notebook.get("cells", []), list):
        raise NotebookError("the file is JSON but not a notebook (no list of cells)")
    metadata = notebook.get("metadata") if isinstance(notebook.get("metadata"), dict) else {}
    cells = []
    for cell in notebook.get("cells", []):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        if isinstance(source, list):
            source = "".join(s for s in source if isinstance(s, str))
        if isinstance(source, str):
            cells.append(source)
    return cells, metadata


def identify(metadata: dict, filename: str, known: list[str]) -> tuple[str | None, str]:
    """The exercise a submission belongs to, and how it was found (or why it was not).

    The notebook's ``metadata.coursekit.exercise`` wins; without it, a known exercise name in
    the file name. An unknown name is reported, never guessed.

    Example:
        >>> identify({}, "alice_03_vae.ipynb", ["03_vae"])
        ('03_vae', 'from the file name')
        >>> identify({"coursekit": {"exercise": "99_x"}}, "a.ipynb", ["03_vae"])[0] is None
        True
    """
    stated = metadata.get("coursekit", {}) if isinstance(metadata.get("coursekit"), dict) else {}
    name = stated.get("exercise")
    if name is not None:
        if isinstance(name, str) and name in known:
            return name, "from the notebook's metadata"
        return None, f"the notebook's metadata names an unknown exercise {str(name)[:60]!r}"
    matches = [k for k in known if re.search(rf"(^|[^0-9a-z]){re.escape(k)}($|[^0-9a-z])",
                                             Path(filename).stem.lower())]
    if len(matches) == 1:
        return matches[0], "from the file name"
    return None, (f"cannot tell which exercise {Path(filename).name!r} is: no coursekit "
                  "metadata and no exercise name in the file name")


@dataclass
class _Reference:
    exercise: Exercise
    specs: list          # Task.spec() per task
    answers: dict        # (task index, case) -> decoded expected answer


class Grader:
    """Grades submissions; reference answers are computed once per exercise and kept."""

    def __init__(self, limits: Limits, *, checks_dir: Path | None = None,
                 solutions: Path = SOLUTIONS, hide=(), jobs: int = 1):
        self.limits, self.checks_dir, self.solutions = limits, checks_dir, Path(solutions)
        self.hide = [p for p in [*hide, checks_dir] if p]
        self.known = exercise_names(self.solutions)
        self._references: dict[str, _Reference] = {}
        self._lock = threading.Lock()
        self._reference_locks: dict[str, threading.Lock] = {}
        self._slots = list(range(max(1, jobs)))
        self._slot_lock = threading.Condition()

    # ---- slots: each parallel run has its own sandbox user -------------------------------
    def _take_slot(self) -> int:
        with self._slot_lock:
            while not self._slots:
                self._slot_lock.wait()
            return self._slots.pop(0)

    def _give_slot(self, slot: int) -> None:
        with self._slot_lock:
            self._slots.append(slot)
            self._slot_lock.notify()

    def _run(self, cells, specs, limits):
        slot = self._take_slot()
        try:
            return run_notebook(cells, specs, limits, slot=slot, hide=self.hide)
        finally:
            self._give_slot(slot)

    # ---- the reference -------------------------------------------------------------------
    def reference(self, name: str) -> _Reference:
        """The exercise, with hidden checks added, and the solution's answers to every case.

        Raises:
            RuntimeError: the reference solution failed a call (a broken exercise).
        """
        with self._lock:  # one lock per exercise: references of different ones run at once
            lock = self._reference_locks.setdefault(name, threading.Lock())
        with lock:
            if name in self._references:
                return self._references[name]
            exercise = load_exercise(name, self.solutions)
            self._add_hidden_checks(exercise)
            specs = [t.spec() for t in exercise.tasks]
            limits = Limits(**{**self.limits.__dict__, "timeout": max(self.limits.timeout, 300)})
            run = self._run(exercise.cells, specs, limits)
            from coursekit.grader.worker import decode

            answers = {}
            for (i, k), record in run.answers.items():
                if "output" not in record:
                    raise RuntimeError(f"the reference solution of {name} failed task "
                                       f"{exercise.tasks[i].id!r} case {k}: {record.get('error')}")
                answers[(i, k)] = decode(record["output"])
            self._references[name] = _Reference(exercise, specs, answers)
            return self._references[name]

    def _add_hidden_checks(self, exercise: Exercise) -> None:
        if not self.checks_dir:
            return
        path = Path(self.checks_dir) / f"{exercise.name}.py"
        if not path.exists():
            return
        namespace = {"case": case, "__name__": f"coursekit_hidden_{exercise.name}"}
        exec(compile(path.read_text(encoding="utf-8"), str(path), "exec"), namespace)  # noqa: S102
        extra = namespace.get("CASES", {})
        by_id = {t.id: t for t in exercise.tasks}
        for task_id, cases in extra.items():
            if task_id not in by_id:
                raise ValueError(f"{path}: no task {task_id!r} in {exercise.name}; tasks are "
                                 f"{sorted(by_id)}")
            for c in cases:
                c.public = False
                by_id[task_id].cases.append(c)

    # ---- one submission ------------------------------------------------------------------
    def grade(self, path: Path, expected_exercise: str | None = None) -> dict:
        """Grade one notebook; the result dict is what ``OUT/<name>.json`` holds."""
        started = time.monotonic()
        report = {"submission": Path(path).name, "exercise": None, "score": 0, "max_score": 0,
                  "checks": [], "errors": []}
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_NOTEBOOK_BYTES + 1)
            if len(data) > MAX_NOTEBOOK_BYTES:
                raise NotebookError(f"the file is larger than {MAX_NOTEBOOK_BYTES >> 20} MiB")
            cells, metadata = read_code_cells(data)
        except (OSError, NotebookError) as error:
            cells, metadata = None, {}
            report["errors"].append(f"not graded: {error}")
        name, how = identify(metadata, str(path), self.known)
        metadata_unknown = how.startswith("the notebook's metadata names")
        if name is None and expected_exercise and cells is not None and not metadata_unknown:
            name, how = expected_exercise, "from --exercise"
        if expected_exercise and name and name != expected_exercise:
            report["errors"].append(f"this is a notebook of exercise {name}, not of "
                                    f"{expected_exercise}: not graded")
            name = None
        target = name or expected_exercise
        if target:
            reference = self.reference(target)
            report["max_score"] = reference.exercise.max_score
            report["checks"] = [_check_entry(t, False, "not graded") for t in
                                reference.exercise.tasks]
        if name is None:
            if not any(e.endswith("not graded") for e in report["errors"]) and cells is not None:
                report["errors"].append(f"not graded: {how}")
            report["seconds"] = round(time.monotonic() - started, 3)
            return report
        report["exercise"] = name
        if cells is None:
            report["seconds"] = round(time.monotonic() - started, 3)
            return report
        run = self._run(cells, reference.specs, self.limits)
        report["checks"] = self._judge(reference, run)
        report["score"] = sum(c["points"] for c in report["checks"])
        for cell in run.cells:
            if cell.get("status") in ("error", "killed"):
                report["errors"].append(f"cell {int(cell['cell']) + 1}: "
                                        f"{str(cell.get('message', ''))[:300]}")
        report["errors"] += run.problems
        report["student_seconds"] = round(run.student_seconds, 3)
        report["seconds"] = round(time.monotonic() - started, 3)
        return report

    def _judge(self, reference: _Reference, run) -> list:
        from coursekit.grader.worker import decode

        checks = []
        for i, task in enumerate(reference.exercise.tasks):
            failures, not_attempted = [], 0
            for k, c in enumerate(task.cases):
                record = run.answers.get((i, k), {"error": "no answer came back"})
                label = f"check {k + 1} ({'public' if c.public else 'hidden'})"
                if "output" not in record:
                    not_attempted += bool(record.get("not_attempted"))
                    failures.append(f"{label}: {str(record.get('error'))[:300]}")
                    continue
                try:
                    got = decode(record["output"])
                except (ValueError, TypeError) as error:
                    failures.append(f"{label}: the answer could not be read ({error})")
                    continue
                message = compare(reference.answers[(i, k)], got, task.rtol, task.atol,
                                  reveal=c.public)
                if message:
                    failures.append(f"{label}: {message}")
            if not_attempted == len(task.cases):
                feedback = f"not attempted: {task.function} still raises NotImplementedError"
            elif failures:
                feedback = (f"{len(failures)} of {len(task.cases)} checks failed; first: "
                            f"{failures[0]}")
            else:
                feedback = f"all {len(task.cases)} checks passed"
            checks.append(_check_entry(task, not failures, feedback))
        return checks


def _check_entry(task, passed: bool, feedback: str) -> dict:
    return {"id": task.id, "points": task.points if passed else 0, "max_points": task.points,
            "passed": passed, "feedback": f"{task.title + ': ' if task.title else ''}{feedback}"}


# ------------------------------------------------------------------------------------ command

def configure(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``python -m coursekit grade``."""
    parser.add_argument("submissions", nargs="+", type=Path, metavar="SUBMISSION.ipynb")
    parser.add_argument("--out", type=Path, required=True, help="folder for the JSON and CSV")
    parser.add_argument("--jobs", type=int, default=2, help="submissions graded at once")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="wall-clock seconds per submission (cells and graded calls)")
    parser.add_argument("--memory-mb", type=int, default=Limits.memory_mb,
                        help="address-space limit per submission, MiB")
    parser.add_argument("--checks", type=Path, default=None,
                        help="folder of hidden checks, NN_topic.py files defining CASES")
    parser.add_argument("--exercise", default=None,
                        help="grade every submission as this exercise; others are reported")
    parser.add_argument("--solutions", type=Path, default=SOLUTIONS,
                        help="folder of solution notebooks (default: the course's solutions/)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _unique_name(name: str, used: set) -> str:
    stem, candidate, n = Path(name).stem, Path(name).stem, 1
    while candidate in used:
        n += 1
        candidate = f"{stem}-{n}"
    used.add(candidate)
    return candidate


def run(args: argparse.Namespace) -> int:
    """Grade ``args.submissions``; return the exit status (see the module docstring)."""
    from tqdm import tqdm

    if not 1 <= args.jobs <= SLOTS_PER_GRADER or args.timeout <= 0:
        print(f"grade: --jobs must be in 1..{SLOTS_PER_GRADER} and --timeout > 0, got "
              f"{args.jobs}, {args.timeout}",
              file=sys.stderr)
        return 2
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    limits = Limits(timeout=args.timeout, memory_mb=args.memory_mb)
    hide = {out} | {p.resolve().parent for p in args.submissions}
    hide |= {args.solutions.resolve()}
    grader = Grader(limits, checks_dir=args.checks.resolve() if args.checks else None,
                    solutions=args.solutions.resolve(), hide=sorted(hide), jobs=args.jobs)
    if args.exercise and args.exercise not in grader.known:
        print(f"grade: unknown exercise {args.exercise!r}; known: {grader.known}",
              file=sys.stderr)
        return 2
    print(f"grading {len(args.submissions)} submission(s), {args.jobs} at once; isolation: "
          f"{isolation()}", file=sys.stderr)
    used: set = set()
    names = [_unique_name(p.name, used) for p in args.submissions]
    reports, failed = {}, []
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(grader.grade, path, args.exercise): (name, path)
                   for name, path in zip(names, args.submissions)}
        for future in tqdm(as_completed(futures), total=len(futures), desc="grading",
                           unit="notebook", disable=args.quiet, file=sys.stderr):
            name, path = futures[future]
            try:
                report = future.result()
            except Exception as error:  # noqa: BLE001 - the grader's failure: say so, exit 2
                failed.append(f"{path}: {type(error).__name__}: {error}")
                continue
            reports[name] = report
            (out / f"{name}.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
            for error in report["errors"]:
                if error.startswith("not graded"):
                    print(f"{path}: {error}", file=sys.stderr)
    _write_csv(out / "grades.csv", [reports[n] for n in names if n in reports])
    for line in failed:
        print(f"grade: the grader failed on {line}", file=sys.stderr)
    return 2 if failed else 0


def _write_csv(path: Path, reports: list) -> None:
    task_ids = []
    for report in reports:
        for check in report["checks"]:
            if check["id"] not in task_ids:
                task_ids.append(check["id"])
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["submission", "exercise", "score", "max_score", *task_ids, "errors"])
        for report in reports:
            points = {c["id"]: c["points"] for c in report["checks"]}
            writer.writerow([report["submission"], report["exercise"] or "", report["score"],
                             report["max_score"], *[points.get(t, "") for t in task_ids],
                             len(report["errors"])])
