"""``python -m coursekit grade``: grade a class's notebooks, in parallel, in sandboxes.

For each submission the grader (this process) reads the notebook as JSON, finds its exercise
(the notebook's ``metadata.coursekit.exercise``, else a known exercise name in the file name),
runs its code cells and the graded calls in the sandbox (:mod:`coursekit.grader.sandbox`), and
judges the plain-data answers (:func:`coursekit.grader.protocol.judge`) against the reference
solution's answers to the same inputs. The references are computed first, before any student
code runs, in sandboxes of their own (this is also the preflight: a broken environment stops the
batch with one message). A task scores ``points x passed cases / cases``, rounded to 0.01.

It writes ``OUT/<id>.json`` per submission, ``OUT/feedback/<id>.md`` (every check's result, for
the student), and rebuilds ``OUT/grades.csv`` from every report in ``OUT`` (so a later batch adds
rows, or replaces those of the same submission), plus ``OUT/similarity.csv`` and, with a roster,
``OUT/canvas.csv`` and ``OUT/moodle.csv`` (:mod:`coursekit.grader.gradebook`). ``--shard K/N``
grades a deterministic share of the submissions; ``grade merge OUT1 OUT2 ... --out OUT`` joins
shards.

Exit status: 0 when every submission was graded or reported "not graded: <reason>"; 2 for bad
input (a missing file, a file that is not a notebook, bad options), when no sandbox can be built
(without ``--unsafe``), or when the grader itself failed (the preflight or a reference solution).

Hidden checks kept outside the repository: ``--checks DIR`` reads ``DIR/NN_topic.py``, Python
that defines ``CASES = {"task_id": [case(...), ...]}`` (``case`` is predefined); those cases are
added, hidden, to the task's cases. The file and the expected answers never enter the sandbox;
the cases' *inputs* do, as every hidden case's, but only after the notebook's cells and the
public calls have returned, so no message that reaches the feedback can carry them.

What is graded: every regular file named ``*.ipynb`` given or found under a folder given (the
folder walked without following links). A symbolic link, a folder or a FIFO named ``.ipynb``, a
file that is not UTF-8 JSON or an nbformat 3 notebook gets a report "not graded: <reason>"; a
submission's id comes from its path as given (never from where a link points), and names are
stored and printed escaped.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import stat
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from coursekit.grader import protocol
from coursekit.grader.sandbox import (Limits, NoIsolation, isolation, mode, run_notebook,
                                     user_scope_works)
from coursekit.grader.tasks import SOLUTIONS, Exercise, case, exercise_names, load_exercise
from coursekit.grader.written import attach

__all__ = ["configure", "run", "Grader", "identify", "Source", "read_code_cells", "submission_ids",
           "NotebookError"]

MAX_NOTEBOOK_BYTES = 20 * 2**20


class NotebookError(ValueError):
    """A submission that is not a readable notebook."""


def read_submission(path: Path) -> bytes:
    """The bytes of the regular file at ``path`` itself: a symbolic link (also one in a folder
    the grader walked), a folder, a FIFO or a device is refused without being opened for
    reading, and the file is at most ``MAX_NOTEBOOK_BYTES``.

    Raises:
        NotebookError: with what the path is instead.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        if os.path.islink(path):
            raise NotebookError("a symbolic link, not a notebook file: hand in the file "
                                "itself") from None
        raise NotebookError(f"cannot be opened ({error.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = ("a folder" if stat.S_ISDIR(info.st_mode) else
                    "a FIFO" if stat.S_ISFIFO(info.st_mode) else "not a regular file")
            raise NotebookError(f"{kind} named .ipynb, not a notebook file")
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(MAX_NOTEBOOK_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_NOTEBOOK_BYTES:
        raise NotebookError(f"the file is larger than {MAX_NOTEBOOK_BYTES >> 20} MiB")
    return data


def display_path(path) -> str:
    """A path as text that can be stored as UTF-8 and printed: undecodable bytes of its name
    as ``\\xNN``, control characters escaped."""
    from coursekit.grader.gradebook import shown

    return shown(os.fspath(path))


def read_code_cells(data: bytes) -> tuple[list[str], dict]:
    """The code cells' sources and the metadata of notebook JSON ``data``.

    Raises:
        NotebookError: not JSON, or not shaped like a notebook (with what was wrong).
    """
    if not data.strip():
        raise NotebookError("the file is empty")
    try:
        notebook = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise NotebookError(f"the file is not valid notebook JSON ({str(error)[:80]})") from None
    if isinstance(notebook, dict) and ("worksheets" in notebook or (
            type(notebook.get("nbformat")) is int and notebook["nbformat"] < 4)):
        raise NotebookError(f"an nbformat {str(notebook.get('nbformat', 3))[:5]} notebook: open "
                            "it in Jupyter and save it again (nbformat 4)")
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


@dataclass(frozen=True)
class Source:
    """How ``identify`` found a submission's exercise, or why it could not: ``kind`` is one of
    ``SOURCES``; ``str(source)`` is the sentence a report shows."""

    kind: str    # "metadata", "file_name", "flag", "unknown_metadata" or "not_found"
    text: str    # the sentence, naming the exercise or the file

    def __str__(self) -> str:
        return self.text


SOURCES = ("metadata", "file_name", "flag", "unknown_metadata", "not_found")


def identify(metadata: dict, filename: str, known: list[str]) -> tuple[str | None, Source]:
    """The exercise a submission belongs to, and how it was found (or why it was not).

    The notebook's ``metadata.coursekit.exercise`` wins; without it, a known exercise name in
    the file name. An unknown name is reported, never guessed.

    Example:
        >>> name, source = identify({}, "alice_03_vae.ipynb", ["03_vae"])
        >>> name, source.kind, str(source)
        ('03_vae', 'file_name', 'from the file name')
        >>> identify({"coursekit": {"exercise": "99_x"}}, "a.ipynb", ["03_vae"])[1].kind
        'unknown_metadata'
    """
    stated = metadata.get("coursekit", {}) if isinstance(metadata.get("coursekit"), dict) else {}
    name = stated.get("exercise")
    if name is not None:
        if isinstance(name, str) and name in known:
            return name, Source("metadata", "from the notebook's metadata")
        return None, Source("unknown_metadata", f"the notebook's metadata names an unknown "
                                                f"exercise {str(name)[:60]!r}")
    matches = [k for k in known if re.search(rf"(^|[^0-9a-z]){re.escape(k)}($|[^0-9a-z])",
                                             Path(filename).stem.lower())]
    if len(matches) == 1:
        return matches[0], Source("file_name", "from the file name")
    return None, Source("not_found", f"cannot tell which exercise {Path(filename).name!r} is: "
                                     f"no coursekit metadata and no exercise name in the file name")


def submission_ids(paths: list[Path], existing: dict | None = None) -> list[str]:
    """A distinct, recognisable id per submission: its file name; where two share a name, or
    the name is taken in ``existing`` (``{resolved file: id}`` of reports already in the output
    folder) by another file, the folder is added (``alice/hw.ipynb`` -> ``alice__hw``). A file
    graded before keeps its id, so grading it again replaces its row.

    Example:
        >>> submission_ids([Path("a/x/hw.ipynb"), Path("a/y/hw.ipynb"), Path("a/y/z.ipynb")])
        ['x__hw', 'y__hw', 'z']
    """
    existing = dict(existing or {})
    taken = set(existing.values())
    resolved = [display_path(os.path.abspath(p)) for p in paths]  # links are not followed
    stems = [Path(p).stem for p in resolved]
    ids = []
    for path, stem in zip(resolved, stems):
        if path in existing:
            ids.append(existing[path])
            continue
        candidate = stem
        if stems.count(stem) > 1 or candidate in taken:
            candidate = f"{Path(path).parent.name}__{stem}"
        candidate = re.sub(r"[^A-Za-z0-9_.-]+", "_", candidate).strip("._") or "submission"
        base, n = candidate, 1
        while candidate in taken:
            n += 1
            candidate = f"{base}-{n}"
        taken.add(candidate)
        ids.append(candidate)
    return ids


@dataclass
class _Reference:
    exercise: Exercise
    specs: list          # protocol.task_spec per task
    answers: dict        # (task index, case) -> decoded expected answer


class Grader:
    """Grades submissions; reference answers are computed once per exercise, before any
    student code, and kept."""

    def __init__(self, limits: Limits, *, checks_dir: Path | None = None,
                 solutions: Path = SOLUTIONS, jobs: int = 1, unsafe: bool = False,
                 cache_dir: Path | None = None, secret: bytes | None = None):
        self.limits, self.checks_dir, self.solutions = limits, checks_dir, Path(solutions)
        self.unsafe, self.cache_dir = unsafe, cache_dir  # cache: refcache.py
        self.secret = secret  # the course secret of per-student variants (variants.py)
        self.known = exercise_names(self.solutions)
        self._references: dict[str, _Reference] = {}
        self._lock = threading.Lock()
        self._reference_locks: dict[str, threading.Lock] = {}

    def _run(self, cells, specs, limits):
        return run_notebook(cells, specs, limits, unsafe=self.unsafe)

    # ---- the reference -------------------------------------------------------------------
    def reference(self, name: str, seed: int | None = None) -> _Reference:
        """The exercise, with hidden checks added, and the solution's answers to every case
        (with ``seed``: of that student's variant).

        Raises:
            RuntimeError: the reference solution failed a call (a broken exercise or sandbox).
        """
        with self._lock:  # one lock per exercise: references of different ones run at once
            lock = self._reference_locks.setdefault(name, threading.Lock())
        with lock:
            if (name, seed) in self._references:
                return self._references[(name, seed)]
            exercise = load_exercise(name, self.solutions)
            if seed is not None:
                from coursekit.grader.variants import apply_variant

                exercise = apply_variant(exercise, seed)
            self._add_hidden_checks(exercise)
            specs = [protocol.task_spec(t) for t in exercise.tasks]
            from coursekit.grader import refcache

            key = refcache.digest(exercise.path, self.checks_dir and
                                  Path(self.checks_dir) / f"{name}.py", seed)
            kept_as = name if seed is None else f"{name}-{seed}"
            kept = refcache.load(self.cache_dir, kept_as, key)
            if kept is not None and set(kept) == {(i, k) for i, t in enumerate(exercise.tasks)
                                                  for k in range(len(t.cases))}:
                answers = {ik: protocol.decode(value) for ik, (value, _) in kept.items()}
                for (i, k), (_, weight) in kept.items():
                    if weight is not None:
                        specs[i]["cases"][k]["weight"] = weight
                self._references[(name, seed)] = _Reference(exercise, specs, answers)
                return self._references[(name, seed)]
            # the reference is trusted code: a tight limit meant for students must not fail it
            limits = Limits(**{**self.limits.__dict__, "timeout": max(self.limits.timeout, 300),
                               "memory_mb": max(self.limits.memory_mb, Limits.memory_mb),
                               "trusted": True})
            run = self._run(exercise.cells, specs, limits)
            answers = {}
            for (i, k), record in sorted(run.answers.items()):
                if "output" not in record:
                    problems = "; ".join(run.problems)
                    raise RuntimeError(
                        f"the reference solution of {name} failed task {exercise.tasks[i].id!r} "
                        f"case {k + 1}: {protocol._one_line(record.get('error'))}"
                        + (f" ({problems})" if problems else ""))
                answers[(i, k)] = protocol.decode(record["output"])
                # a student's call gets time in proportion to what the reference's took
                specs[i]["cases"][k]["weight"] = round(run.call_seconds.get((i, k), 0.0) + 0.5,
                                                       3)
                task, held = exercise.tasks[i], exercise.tasks[i].cases[k].held_out
                if task.judge:  # a training task: its reference must pass its own judge
                    outcome = protocol.judge_artefact(task.judge, held, record)
                    if not outcome.passed:
                        raise RuntimeError(
                            f"the reference solution of {name} does not pass the judge of task "
                            f"{task.id!r} case {k + 1}: {outcome.message}")
            refcache.store(self.cache_dir, kept_as, key,
                           {(i, k): (r["output"], specs[i]["cases"][k].get("weight"))
                            for (i, k), r in run.answers.items()})
            self._references[(name, seed)] = _Reference(exercise, specs, answers)
            return self._references[(name, seed)]

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
    def grade(self, path: Path, expected_exercise: str | None = None, *,
              submission_id: str | None = None, student: str | None = None) -> dict:
        """Grade one notebook; the result dict is what ``OUT/<id>.json`` holds.

        Never raises for anything the submission does: a failure while reading or judging it
        becomes ``"not_graded": "<reason>"`` in its report.
        """
        started = time.monotonic()
        report = {"submission": submission_id or re.sub(r"[^A-Za-z0-9_.-]+", "_",
                                                        Path(path).stem).strip("._"),
                  "file": display_path(os.path.abspath(path)),
                  "student": student, "exercise": None, "score": 0, "max_score": 0,
                  "not_graded": None, "checks": [], "errors": []}
        try:
            self._grade(Path(path), expected_exercise, report)
        except RuntimeError:
            raise  # the reference failed: the grader's failure, not the submission's
        except Exception as error:  # noqa: BLE001 - this submission only: say so and go on
            report.update(score=0, not_graded=f"the grader could not judge it "
                          f"({type(error).__name__}: {protocol._one_line(error, 200)})")
            for check in report["checks"]:
                check.update(points=0, passed=False)
        report["seconds"] = round(time.monotonic() - started, 3)
        return report

    def _grade(self, path: Path, expected_exercise: str | None, report: dict) -> None:
        data = None
        try:
            data = read_submission(path)
            cells, metadata = read_code_cells(data)
        except (OSError, NotebookError) as error:
            cells, metadata = None, {}
            report["not_graded"] = str(error)
        name, how = identify(metadata, display_path(path), self.known)
        if name is None and expected_exercise and cells is not None and \
                how.kind != "unknown_metadata":
            name, how = expected_exercise, Source("flag", "from --exercise")
        if expected_exercise and name and name != expected_exercise:
            report["not_graded"] = (f"this is a notebook of exercise {name}, not of "
                                    f"{expected_exercise}")
            name = None
        target = name or expected_exercise
        seed = None
        if target:
            reference = self.reference(target)
            seed = self._seed(reference.exercise, report)
            if seed is not None:  # this student's own variant
                reference = self.reference(target, seed)
            report["max_score"] = reference.exercise.max_score
            report["checks"] = [_check_entry(t, [], "not graded") for t in
                                reference.exercise.tasks]
            attach(report, reference.exercise, None)
        if name is None:
            if report["not_graded"] is None:
                report["not_graded"] = str(how)
            return
        report["exercise"] = name
        if cells is None:
            return
        if seed is not None:
            from coursekit.grader.variants import check_metadata

            report["not_graded"] = check_metadata(metadata, seed)
            if report["not_graded"]:
                return
        from coursekit.grader.similarity import fingerprints, flags

        template = self._template(reference)
        report["fingerprints"] = fingerprints(cells, template)
        report["flags"] = flags(cells, report["fingerprints"], template)
        run = self._run(cells, reference.specs, self.limits)
        report["checks"] = self._judge(reference, run)
        attach(report, reference.exercise, data)  # written answers: 0 until marked by hand
        if seed is not None:
            self._variant_answers(reference, run, report)
        report["score"] = round(sum(c["points"] for c in report["checks"]), 2)
        for cell in run.cells:
            if cell.get("status") in ("error", "killed"):
                report["errors"].append(f"cell {int(cell['cell']) + 1}: {cell['message']}")
        report["errors"] += [protocol._one_line(p) for p in run.problems]
        report["student_seconds"] = round(run.student_seconds, 3)

    def _seed(self, exercise: Exercise, report: dict) -> int | None:
        """The variant seed of the report's student, where the exercise has variants."""
        if exercise.variant is None or self.secret is None:
            return None
        if not report.get("student"):
            report["errors"].append("graded on the common variant: the submission is not on "
                                    "the roster, so its student's variant is unknown")
            return None
        from coursekit.grader.variants import seed_of

        report["seed"] = seed_of(self.secret, report["student"])
        return report["seed"]

    @staticmethod
    def _variant_answers(reference: _Reference, run, report: dict) -> None:
        """Fingerprints of the answers and the expected answers on variant cases, which
        similarity.csv compares across students."""
        from coursekit.grader.variants import fingerprint

        names = set(reference.exercise.variant(report["seed"]))
        report["variant_answers"], report["variant_expected"] = {}, {}
        for i, task in enumerate(reference.exercise.tasks):
            if task.id not in names:
                continue
            got = [run.answers.get((i, k), {}) for k in range(len(task.cases))]
            report["variant_answers"][task.id] = [
                fingerprint(protocol.decode(r["output"])) if "output" in r else None
                for r in got]
            report["variant_expected"][task.id] = [
                fingerprint(reference.answers[(i, k)]) for k in range(len(task.cases))]

    @staticmethod
    def _template(reference: _Reference) -> set:
        """The lines of the handed-out exercise's code (not the student's own work)."""
        from coursekit.grader.assign import stub_source

        return {line.strip() for cell in reference.exercise.cells
                for line in stub_source(cell).splitlines() if line.strip()}

    def _judge(self, reference: _Reference, run) -> list:
        from coursekit.grader.drivers import answer_names

        checks = []
        for i, task in enumerate(reference.exercise.tasks):
            results = []
            for k, c in enumerate(task.cases):
                record = run.answers.get((i, k))
                if task.judge:  # measured here, on data the sandbox never saw
                    outcome = protocol.judge_artefact(task.judge, c.held_out, record,
                                                      public=c.public)
                else:
                    outcome = protocol.judge(reference.answers[(i, k)], record, rtol=task.rtol,
                                             atol=task.atol, public=c.public,
                                             names=answer_names(task.driver, task.function))
                result = {"case": k + 1, "public": c.public, "passed": outcome.passed,
                          "code": outcome.code}
                if c.public and not outcome.passed:
                    result["call"] = protocol.describe_case(task.function, task.driver, c.args,
                                                            c.kwargs)
                    result["message"] = outcome.message
                if not outcome.passed and (c.hint or (task.hint and not c.public)):
                    result["hint"] = c.hint or task.hint  # beside the case it explains
                results.append(result)
            checks.append(_check_entry(task, results))
        return checks


def _check_entry(task, results: list, feedback: str | None = None) -> dict:
    """A task's entry of the report: points for the share of cases passed, and feedback."""
    passed = sum(r["passed"] for r in results)
    points = round(task.points * passed / len(task.cases), 2) if results else 0
    if feedback is None:
        if results and all(r["code"] == "not_attempted" for r in results):
            feedback = f"not attempted: {task.function} still raises NotImplementedError"
        elif passed == len(results):
            feedback = ("the check passed" if len(results) == 1
                        else f"all {len(results)} checks passed")
        else:
            failed = [r for r in results if not r["passed"]]
            first = failed[0]
            if first["public"]:
                detail = f"check {first['case']} (public): {first['call']}: {first['message']}"
            else:
                detail = f"check {first['case']} (hidden) failed"
            # each hint goes with the hidden case it belongs to (a case's own, else the task's)
            hinted = [(r, r.get("hint") or ("" if r["public"] else task.hint)) for r in failed]
            hinted = [(r, hint) for r, hint in hinted if hint]
            if hinted and hinted[0][0] is first:
                detail += f" (hint: {hinted[0][1]})"
            elif hinted:
                kind = "public" if hinted[0][0]["public"] else "hidden"
                detail += (f"; check {hinted[0][0]['case']} ({kind}) failed too (hint: "
                           f"{hinted[0][1]})")
            feedback = f"{passed} of {len(results)} checks passed; first failure: {detail}"
    title = f"{task.title}: " if task.title else ""
    return {"id": task.id, "points": points, "max_points": task.points,
            "passed": bool(results) and passed == len(results), "cases_passed": passed,
            "cases": len(task.cases), "hint": task.hint, "feedback": title + feedback,
            "results": results}


# ------------------------------------------------------------------------------------ command

def configure(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``python -m coursekit grade``."""
    from coursekit.grader import instructor
    from coursekit.grader.commands import DefaultsHelp

    parser.formatter_class = DefaultsHelp
    parser.epilog = "more: python -m coursekit grade merge|review|report|release --help"
    parser.add_argument("submissions", nargs="+", type=Path, metavar="SUBMISSION",
                        help="notebooks or folders of notebooks; 'merge DIR...' joins shards")
    parser.add_argument("--out", type=Path, required=True,
                        help="folder for the reports, grades.csv and exports (added to)")
    parser.add_argument("--jobs", type=int, default=None,
                        help="submissions graded at once (default: 2 as root, 1 in an "
                             "unprivileged user namespace, where limits are best-effort)")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="wall-clock seconds per submission (cells and graded calls)")
    parser.add_argument("--memory-mb", type=int, default=Limits.memory_mb,
                        help="memory of all of a submission's processes together, MiB")
    parser.add_argument("--checks", type=Path, default=None,
                        help="folder of hidden checks, NN_topic.py files defining CASES")
    parser.add_argument("--exercise", default=None,
                        help="grade every submission as this exercise; others are reported")
    parser.add_argument("--solutions", type=Path, default=SOLUTIONS,
                        help="folder of solution notebooks (default: the course's solutions/)")
    parser.add_argument("--roster", type=Path, default=None,
                        help="CSV with columns 'file' and 'student' (and optionally 'name', "
                             "'email'): adds student ids and writes canvas.csv and moodle.csv")
    parser.add_argument("--shard", default=None, metavar="K/N",
                        help="grade only share K of N (1 <= K <= N) of the submissions")
    parser.add_argument("--unsafe", action="store_true",
                        help="grade even where no sandbox can be built: student code then runs "
                             "as your user and can read the solutions and change the results")
    parser.add_argument("--keep-latest", action="store_true",
                        help="a student with several reports of one exercise: export the "
                             "latest (default: export none and list them in conflicts.csv)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    instructor.configure(parser)


def _expand(paths: list[Path]) -> list[Path]:
    """Paths as given, and every entry named ``*.ipynb`` under folders given (walked without
    following links, sorted): links, folders and FIFOs among them are kept, to be reported
    "not graded"; errors for the rest.

    Raises:
        ValueError: a path that does not exist, or a file that is not a ``.ipynb``.
    """
    found = []
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            notebooks = []
            for folder, dirs, files in os.walk(path):  # links to folders are not entered
                dirs[:] = sorted(d for d in dirs if d != ".ipynb_checkpoints")
                notebooks += [Path(folder) / n for n in [*files, *dirs] if n.endswith(".ipynb")]
            if not notebooks:
                raise ValueError(f"the folder {display_path(path)} holds no .ipynb notebooks")
            found += sorted(notebooks)
        elif not os.path.lexists(path):
            raise ValueError(f"no such file or folder: {display_path(path)}")
        elif path.suffix != ".ipynb":
            raise ValueError(f"{display_path(path)} is not a notebook (.ipynb)")
        else:
            found.append(path)
    return found


def _shard(spec: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)/(\d+)", spec or "")
    if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise ValueError(f"--shard must be K/N with 1 <= K <= N, got {spec!r}")
    return int(match.group(1)), int(match.group(2))


def run(args: argparse.Namespace) -> int:
    """Grade ``args.submissions`` (or merge shards); return the exit status (see above)."""
    from coursekit.grader import gradebook

    if args.submissions and str(args.submissions[0]) == "merge":
        try:
            return gradebook.merge(args.submissions[1:], args.out, roster=args.roster,
                                   keep_latest=args.keep_latest)
        except ValueError as error:
            print(f"grade merge: {error}", file=sys.stderr)
            return 2
    if args.jobs is None:
        # as an ordinary user without a delegated cgroup no CPU share holds: one run at a time
        args.jobs = 1 if mode() == "user" and not user_scope_works() else 2
    try:
        key = gradebook.instructor_key()
        if not 1 <= args.jobs <= 64 or args.timeout <= 0 or args.memory_mb < 256:
            raise ValueError(f"--jobs must be in 1..64, --timeout > 0 and --memory-mb >= 256, "
                             f"got {args.jobs}, {args.timeout}, {args.memory_mb}")
        if args.out.exists() and not args.out.is_dir():
            raise ValueError(f"--out {args.out} is a file, not a folder")
        paths = _expand(args.submissions)
        before = {r.get("file"): r["submission"] for r in gradebook.read_reports(args.out)} \
            if args.out.is_dir() else {}
        ids = submission_ids(paths, before)
        k, n = _shard(args.shard) if args.shard else (1, 1)
        # by position over the sorted ids: every share of a small class gets its part
        order = sorted(range(len(ids)), key=lambda i: ids[i])
        chosen = sorted(i for position, i in enumerate(order) if position % n == k - 1)
        paths, ids = [paths[i] for i in chosen], [ids[i] for i in chosen]
        from coursekit.grader import instructor, policy
        from coursekit.grader.roster import match
        from coursekit.grader.variants import read_secret

        # without --roster or --submitted, the copies kept in OUT by an earlier run serve
        roster = gradebook.read_roster(args.roster) if args.roster else \
            instructor.kept_roster(args.out)
        submitted = getattr(args, "submitted", None) or instructor.kept_times(args.out)
        times = policy.read_times(submitted) if submitted else {}
        secret = read_secret(args.secret) if getattr(args, "secret", None) else None
        if getattr(args, "policy", None):
            policy.load_policy(args.policy)
        known = exercise_names(args.solutions)
        if args.exercise and args.exercise not in known:
            raise ValueError(f"unknown exercise {args.exercise!r}; known: {known}")
    except ValueError as error:
        print(f"grade: {error}", file=sys.stderr)
        return 2
    if mode() == "none" and not args.unsafe:
        print(f"grade: refusing to run student code without a sandbox. {isolation()}",
              file=sys.stderr)
        return 2
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    instructor.remember(out, roster=args.roster, policy=getattr(args, "policy", None),
                        task_columns=getattr(args, "task_columns", None),
                        times=getattr(args, "submitted", None))
    limits = Limits(timeout=args.timeout, memory_mb=args.memory_mb)
    checks_dir = args.checks.resolve() if args.checks else None
    grader = Grader(limits, checks_dir=checks_dir, solutions=args.solutions.resolve(),
                    unsafe=args.unsafe, cache_dir=out / ".references", secret=secret)
    config = gradebook.configuration(args.solutions.resolve(), checks_dir,
                                     {**limits.__dict__, "exercise": args.exercise}, f"{k}/{n}")
    print(f"grading {len(paths)} submission(s), {args.jobs} at once; isolation: "
          f"{isolation()}", file=sys.stderr)
    # the preflight: every reference first, before and apart from any student code
    needed = _exercises_of(paths, grader.known, args.exercise)
    try:
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            list(pool.map(grader.reference, sorted(needed)))
    except (RuntimeError, ValueError, NoIsolation) as error:
        print(f"grade: preflight failed, nothing was graded: {error}", file=sys.stderr)
        return 2
    reports, failed = [], []
    progress = _progress(len(paths), args.quiet)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(grader.grade, path, args.exercise, submission_id=sid,
                               student=gradebook.student_of(roster, path)): path
                   for sid, path in zip(ids, paths)}
        for future in as_completed(futures):
            path = futures[future]
            progress.update(1)
            try:
                report = future.result()
            except Exception as error:  # noqa: BLE001 - the grader's failure: say so, exit 2
                failed.append(f"{display_path(path)}: {type(error).__name__}: {error}")
                continue
            report["config"] = config
            policy.stamp(report, path, times)  # when it was handed in, for the late penalty
            if roster and not report.get("student"):
                report["roster_problem"] = match(roster, path)[1]
            try:
                gradebook.write_report(out, report, key)
            except (OSError, ValueError, TypeError) as error:  # this report only
                failed.append(f"{display_path(path)}: its report could not be written: "
                              f"{type(error).__name__}: {error}")
                continue
            reports.append(report)
    progress.close()
    gradebook.write_marker(out, f"{k}/{n}", config, [r["submission"] for r in reports], key)
    batch = {r["submission"] for r in reports}
    finished = gradebook.finish(out, roster=roster, keep_latest=args.keep_latest)
    gradebook.summary(out, [r for r in finished if r["submission"] in batch], file=sys.stderr)
    for line in failed:
        print(f"grade: the grader failed on {line}", file=sys.stderr)
    return 2 if failed else 0


def _exercises_of(paths, known, expected) -> set:
    names = {expected} if expected else set()
    for path in paths:
        try:
            _, metadata = read_code_cells(read_submission(path))
        except (OSError, NotebookError):
            continue
        name, _ = identify(metadata, str(path), known)
        if name and not expected:
            names.add(name)
    return names


def _progress(total: int, quiet: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc="grading", unit="notebook", disable=quiet, file=sys.stderr)
