"""Written answers graded by hand against a rubric (exercises part).

A solution notebook declares its written tasks in its grading cell, beside ``TASKS``::

    from coursekit.grader.written import Written, criterion
    WRITTEN = [Written("why_mixture", points=2, title="why the mixture wins", rubric=[
        criterion("compares held-out likelihoods, not training ones", 1,
                  comment="a model is judged on digits it did not see"),
        criterion("names what the components capture (digit shapes)", 1)])]

and the cell the student writes in carries the tag ``answer:<task id>`` (a Markdown cell in the
MyST source: ``+++ {"tags": ["answer:why_mixture"]}`` above it). In the solution that cell holds a
model answer; ``python -m coursekit assign`` replaces it with :data:`PLACEHOLDER`.

The grader copies each answer into the submission's report (``report["written"]``) and scores it
0 until the instructor marks it: ``python -m coursekit grade review OUT`` writes one offline page
per written task (:mod:`coursekit.grader.review`), whose saved marks
``grade review OUT --apply FILE`` adds to ``OUT/instructor/marks.json``. Every rebuild of ``OUT`` applies
those marks (:func:`apply_marks`), so grading a submission again keeps them; a mark made on an
answer that has since changed is kept and flagged for a second look.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Criterion", "Written", "criterion", "PLACEHOLDER", "TAG", "answer_task",
           "read_answers", "attach", "load_marks", "save_marks", "apply_marks", "add_marks"]

TAG = "answer:"                                   # cell tag prefix: answer:<task id>
PLACEHOLDER = "*Write your answer here, in a few sentences.*"
MAX_ANSWER_CHARS = 20_000                         # longer answers are cut (and say so)
KEPT = "instructor"                               # OUT's folder of what the instructor adds
MARKS = "marks.json"                              # the instructor's marks, in OUT/instructor
NO_ANSWER = "not attempted: no answer written"


@dataclass
class Criterion:
    """One rubric item: ticked, the answer earns ``points``."""

    text: str                      # what the answer must do, shown to the marker and student
    points: float                  # earned when ticked
    comment: str = ""              # reusable feedback shown to the student when not ticked


def criterion(text: str, points: float, comment: str = "") -> Criterion:
    """A :class:`Criterion` (the name the grading cells use)."""
    return Criterion(text=text, points=points, comment=comment)


@dataclass
class Written:
    """A free-text task, marked by hand against its rubric."""

    id: str                        # unique in the course, like a Task's id
    points: int                    # the sum of the rubric's points
    rubric: list                   # Criterion objects
    title: str = ""                # one line for the review page and the feedback
    kind: str = field(default="written", init=False)

    def __post_init__(self):
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.id):
            raise ValueError(f"written task id must be lower_snake_case, got {self.id!r}")
        if not self.rubric or not all(isinstance(c, Criterion) for c in self.rubric):
            raise ValueError(f"written task {self.id!r} needs a rubric: a list of criterion()")
        if any(not c.points > 0 for c in self.rubric):
            raise ValueError(f"written task {self.id!r}: every criterion earns points > 0")
        total = sum(c.points for c in self.rubric)
        if not isinstance(self.points, int) or abs(total - self.points) > 1e-9:
            raise ValueError(f"written task {self.id!r}: points={self.points!r} but the rubric "
                             f"adds up to {total:g}")

    def rubric_data(self) -> list:
        """The rubric as plain data, as reports carry it."""
        return [{"text": c.text, "points": c.points, "comment": c.comment} for c in self.rubric]


def answer_task(metadata: dict) -> str | None:
    """The written task a cell answers, from its ``answer:<id>`` tag (``None`` for others).

    Example:
        >>> answer_task({"tags": ["answer:why_mixture"]})
        'why_mixture'
    """
    tags = metadata.get("tags", []) if isinstance(metadata, dict) else []
    for tag in tags if isinstance(tags, list) else []:
        if isinstance(tag, str) and tag.startswith(TAG):
            return tag[len(TAG):]
    return None


def read_answers(notebook: dict, task_ids: list) -> dict:
    """``{task id: answer text or None}`` from notebook JSON: the cells tagged for each task,
    joined; an untouched placeholder or an empty cell is ``None``."""
    found: dict = {t: [] for t in task_ids}
    for cell in notebook.get("cells", []) if isinstance(notebook, dict) else []:
        if not isinstance(cell, dict):
            continue
        task = answer_task(cell.get("metadata") or {})
        if task not in found:
            continue
        source = cell.get("source", "")
        if isinstance(source, list):
            source = "".join(s for s in source if isinstance(s, str))
        if isinstance(source, str) and source.strip() and source.strip() != PLACEHOLDER:
            found[task].append(source.strip())
    return {t: "\n\n".join(parts) or None for t, parts in found.items()}


def _digest(text: str | None) -> str:
    return hashlib.sha256((text or "").encode("utf-8")).hexdigest()


def attach(report: dict, exercise, data: bytes | None) -> None:
    """Add ``exercise``'s written tasks to ``report``: the answers read from notebook JSON
    ``data`` (``None``: unreadable) and a check entry each, worth 0 until marked."""
    tasks = getattr(exercise, "written", [])
    if not tasks:
        return
    try:
        notebook = json.loads(data.decode("utf-8")) if data else {}
    except (UnicodeDecodeError, ValueError, RecursionError):
        notebook = {}
    texts = read_answers(notebook, [t.id for t in tasks])
    report["written"] = {}
    for task in tasks:
        text = texts[task.id]
        if text and len(text) > MAX_ANSWER_CHARS:
            text = text[:MAX_ANSWER_CHARS] + "\n\n(cut by the grader: the answer was longer)"
        report["written"][task.id] = {"title": task.title, "text": text,
                                      "sha256": _digest(text), "rubric": task.rubric_data()}
        report["checks"] = [c for c in report["checks"] if c["id"] != task.id]
        report["checks"].append({
            "id": task.id, "kind": "written", "points": 0, "max_points": task.points,
            "passed": False, "cases_passed": 0, "cases": 0, "hint": "", "results": [],
            "feedback": f"{task.title}: " * bool(task.title) + (
                NO_ANSWER if text is None else "not marked yet")})


# ------------------------------------------------------------------------------- the marks

def load_marks(out: Path) -> dict:
    """``{submission: {task: mark}}`` from ``OUT/instructor/marks.json`` (empty when there is none).

    Raises:
        ValueError: the file exists but is not a marks file.
    """
    path = Path(out) / KEPT / MARKS
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise ValueError(f"{path} is not valid JSON ({error})") from None
    if not isinstance(data, dict) or not isinstance(data.get("marks"), dict):
        raise ValueError(f"{path} is not a marks file (no 'marks' table)")
    return data["marks"]


def save_marks(out: Path, marks: dict) -> Path:
    """Write ``OUT/instructor/marks.json`` atomically."""
    path = Path(out) / KEPT / MARKS
    path.parent.mkdir(exist_ok=True)
    part = path.with_suffix(".json.part")
    part.write_text(json.dumps({"marks": marks}, indent=1, sort_keys=True, allow_nan=False),
                    encoding="utf-8")
    os.replace(part, path)
    return path


def _valid_mark(mark, rubric: list, where: str) -> dict:
    if not isinstance(mark, dict):
        raise ValueError(f"{where}: a mark must be an object")
    ticked = mark.get("criteria")
    if (not isinstance(ticked, list) or len(ticked) != len(rubric)
            or not all(isinstance(t, bool) for t in ticked)):
        raise ValueError(f"{where}: 'criteria' must be {len(rubric)} true/false values, one per "
                         f"rubric item, got {str(ticked)[:80]}")
    comment = mark.get("comment", "")
    if not isinstance(comment, str) or len(comment) > 5000:
        raise ValueError(f"{where}: 'comment' must be text of at most 5000 characters")
    digest = mark.get("answer_sha256", "")
    if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise ValueError(f"{where}: 'answer_sha256' must be the answer's SHA-256 (64 hex digits)")
    return {"criteria": ticked, "comment": comment, "answer_sha256": digest,
            "marked_at": str(mark.get("marked_at") or datetime.datetime.now(
                datetime.timezone.utc).isoformat(timespec="seconds"))[:40]}


def add_marks(out: Path, files: list, reports: list) -> int:
    """Check the review pages' saved files against ``reports`` and add them to
    ``OUT/instructor/marks.json``; return how many marks were added or changed.

    Raises:
        ValueError: a file that is not a saved review, or names an unknown submission or task,
            or whose marks do not fit the rubric (nothing is written then).
    """
    by_id = {r["submission"]: r for r in reports}
    marks = load_marks(out)
    changed = 0
    for file in map(Path, files):
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ValueError(f"cannot read the saved review {file}: {error}") from None
        if not isinstance(data, dict) or data.get("kind") != "coursekit-marks" or \
                not isinstance(data.get("task"), str) or not isinstance(data.get("marks"), dict):
            raise ValueError(f"{file} is not a file saved by a review page")
        task = data["task"]
        for submission, mark in data["marks"].items():
            report = by_id.get(submission)
            if report is None or task not in report.get("written", {}):
                raise ValueError(f"{file}: no submission {submission!r} with written task "
                                 f"{task!r} in this folder")
            mark = _valid_mark(mark, report["written"][task]["rubric"],
                               f"{file}: {submission}/{task}")
            old = marks.get(submission, {}).get(task)
            if old is None or {k: v for k, v in old.items() if k != "marked_at"} != \
                    {k: v for k, v in mark.items() if k != "marked_at"}:
                marks.setdefault(submission, {})[task] = mark
                changed += 1
    save_marks(out, marks)
    return changed


def apply_marks(report: dict, marks: dict) -> dict:
    """``report`` with its written tasks scored from ``marks`` (``{submission: {task: mark}}``),
    ``needs_review`` listing what a marker should look at, and the score added up again."""
    written = report.get("written") or {}
    if not written:
        return report
    review = []
    mine = marks.get(report["submission"], {})
    for check in report["checks"]:
        entry = written.get(check["id"]) if check.get("kind") == "written" else None
        if entry is None:
            continue
        title = f"{entry['title']}: " if entry.get("title") else ""
        mark = mine.get(check["id"])
        if mark is None:
            check.update(points=0, passed=False,
                         feedback=title + (NO_ANSWER if entry["text"] is None
                                           else "not marked yet"))
            if entry["text"] is not None:
                review.append(f"{check['id']}: not marked yet")
            continue
        rubric = entry["rubric"]
        ticked = mark["criteria"] if len(mark["criteria"]) == len(rubric) else [False] * len(rubric)
        points = round(min(check["max_points"],
                           sum(c["points"] for c, t in zip(rubric, ticked) if t)), 2)
        lines = [("met: " if t else "missing: ") + c["text"]
                 + ("" if t or not c["comment"] else f" ({c['comment']})")
                 for c, t in zip(rubric, ticked)]
        if mark.get("comment"):
            lines.append(f"marker's comment: {mark['comment']}")
        check.update(points=points, passed=points == check["max_points"],
                     feedback=title + "; ".join(lines))
        if mark["answer_sha256"] != entry["sha256"]:
            check["feedback"] += "; (the answer changed after it was marked: to be looked at " \
                                 "again)"
            review.append(f"{check['id']}: the answer changed after it was marked")
    report["needs_review"] = review
    if not report.get("not_graded"):
        report["score"] = round(sum(c["points"] for c in report["checks"]), 2)
    return report
