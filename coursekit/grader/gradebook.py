"""A class's results on disk: reports, the gradebook, LMS exports, feedback files, shards
(exercises part).

``OUT/<id>.json`` is the report of one submission (strict JSON: no NaN, nothing but plain data);
everything else in ``OUT`` is rebuilt from all the reports there by :func:`finish`, so grading a
second batch into the same folder adds its rows, and regrading a submission replaces its row:

* ``grades.csv``: a row per submission, a column per task;
* ``feedback/<id>.md``: every check's result for the student, untruncated;
* ``similarity.csv``: the most similar pairs of submissions of an exercise
  (:mod:`coursekit.grader.similarity`), for a human to look at;
* with a roster (``--roster``, a CSV with columns ``file`` and ``student``, optionally ``name``
  and ``email``): ``canvas.csv`` (Canvas' gradebook import: one column per exercise; Canvas
  takes no comments from a CSV) and ``moodle.csv`` (Moodle's grade import: a score column and a
  feedback column per exercise, matched on "ID number").

:func:`merge` joins the ``OUT`` folders of ``grade --shard K/N`` runs.
"""

from __future__ import annotations

import csv
import json
import os
import statistics
from pathlib import Path

from coursekit.grader.tasks import counted

__all__ = ["write_report", "read_reports", "finish", "summary", "merge", "read_roster",
           "student_of", "feedback_markdown"]

REPORT_KEYS = {"submission", "exercise", "score", "max_score", "checks", "errors"}


def write_report(out: Path, report: dict) -> Path:
    """Write ``OUT/<id>.json`` as strict JSON (atomically); return its path."""
    import datetime

    report.setdefault("graded_at", datetime.datetime.now(datetime.timezone.utc)
                      .isoformat(timespec="seconds"))
    path = Path(out) / f"{report['submission']}.json"
    text = json.dumps(report, indent=1, allow_nan=False, ensure_ascii=False)
    part = path.with_suffix(".json.part")
    part.write_text(text, encoding="utf-8")
    os.replace(part, path)
    return path


def read_reports(folder: Path) -> list[dict]:
    """Every report in ``folder`` (other JSON files are left alone), sorted by id."""
    reports = []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and REPORT_KEYS <= set(data):
            reports.append(data)
    return reports


def read_roster(path: Path) -> dict:
    """``{file name or relative path: {"student", "name", "email"}}`` from a roster CSV.

    Raises:
        ValueError: the file is missing, or lacks the ``file`` and ``student`` columns.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except OSError as error:
        raise ValueError(f"cannot read the roster {path}: {error.strerror}") from None
    if not rows or not {"file", "student"} <= set(rows[0]):
        raise ValueError(f"the roster {path} needs the columns 'file' and 'student', found "
                         f"{sorted(rows[0]) if rows else 'no rows'}")
    roster = {}
    for row in rows:
        key = row["file"].strip()
        if key:
            roster[key] = {"student": row["student"].strip(), "name": row.get("name", ""),
                           "email": row.get("email", "")}
    return roster


def student_of(roster: dict, path: Path) -> str | None:
    """The student id the roster gives ``path`` (matched on its name or the end of its path).

    Example:
        >>> student_of({"hw-ann.ipynb": {"student": "s123"}}, Path("in/hw-ann.ipynb"))
        's123'
    """
    if not roster:
        return None
    path = Path(path)
    for key, entry in roster.items():
        if key == path.name or key == path.stem or str(path).endswith("/" + key.lstrip("/")):
            return entry["student"]
    return None


def feedback_markdown(report: dict) -> str:
    """The feedback file of one submission: every check's result, untruncated."""
    lines = [f"# Feedback: {report['submission']}", ""]
    if report.get("student"):
        lines.append(f"Student: {report['student']}  ")
    lines.append(f"Exercise: {report.get('exercise') or 'not recognised'}  ")
    lines.append(f"Score: **{report['score']} / {report['max_score']}**")
    lines.append("")
    if report.get("not_graded"):
        lines += [f"**Not graded:** {report['not_graded']}", ""]
    for check in report["checks"]:
        lines += [f"## {check['id']}: {check['points']} / "
                  f"{counted(check['max_points'], 'point')}", "",
                  check["feedback"], ""]
        for result in check.get("results", []):
            kind = "public" if result["public"] else "hidden"
            verdict = "passed" if result["passed"] else "failed"
            line = f"- check {result['case']} ({kind}): {verdict}"
            if result.get("call"):
                line += f"; call `{result['call']}`"
            if result.get("message"):
                line += f"; {result['message']}"
            lines.append(line)
        if check.get("hint") and any(not r["passed"] and not r["public"]
                                     for r in check.get("results", [])):
            lines.append(f"- hint: {check['hint']}")
        lines.append("")
    if report["errors"]:
        lines += ["## Messages from running the notebook", ""]
        lines += [f"- {e}" for e in report["errors"]]
    return "\n".join(lines) + "\n"


def finish(out: Path, roster: dict | None = None) -> list[dict]:
    """Rebuild everything in ``out`` from its reports; return the reports."""
    out = Path(out)
    reports = read_reports(out)
    feedback = out / "feedback"
    feedback.mkdir(exist_ok=True)
    for report in reports:
        (feedback / f"{report['submission']}.md").write_text(feedback_markdown(report),
                                                             encoding="utf-8")
    _grades_csv(out / "grades.csv", reports)
    from coursekit.grader.similarity import similar_pairs

    with open(out / "similarity.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["exercise", "a", "b", "similarity", "shared_fingerprints"])
        for pair in similar_pairs(reports):
            writer.writerow(pair)
    if roster:
        _exports(out, reports, roster)
    return reports


def _grades_csv(path: Path, reports: list) -> None:
    task_ids = []
    for report in reports:
        for check in report["checks"]:
            if check["id"] not in task_ids:
                task_ids.append(check["id"])
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["submission", "student", "exercise", "score", "max_score", *task_ids,
                         "not_graded", "errors"])
        for report in reports:
            points = {c["id"]: c["points"] for c in report["checks"]}
            writer.writerow([report["submission"], report.get("student") or "",
                             report["exercise"] or "", report["score"], report["max_score"],
                             *[points.get(t, "") for t in task_ids],
                             report.get("not_graded") or "", len(report["errors"])])


def _latest_by_student(reports: list) -> dict:
    """``{student: {exercise: report}}``, the latest graded report of each pair."""
    table: dict = {}
    for report in sorted(reports, key=lambda r: r.get("graded_at", "")):
        if report.get("student") and report.get("exercise"):
            table.setdefault(report["student"], {})[report["exercise"]] = report
    return table


def _exports(out: Path, reports: list, roster: dict) -> None:
    exercises = sorted({r["exercise"] for r in reports if r.get("exercise")})
    maximum = {r["exercise"]: r["max_score"] for r in reports if r.get("exercise")}
    table = _latest_by_student(reports)
    people = {e["student"]: e for e in roster.values()}
    with open(out / "canvas.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["Student", "ID", "SIS User ID", "SIS Login ID", "Section", *exercises])
        writer.writerow(["    Points Possible", "", "", "", "",
                         *[maximum[e] for e in exercises]])
        for student in sorted(people):
            row = table.get(student, {})
            writer.writerow([people[student]["name"] or student, "", student, "", "",
                             *[row[e]["score"] if e in row else "" for e in exercises]])
    with open(out / "moodle.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["ID number", "Email address",
                         *[c for e in exercises for c in (e, f"{e} feedback")]])
        for student in sorted(people):
            row = table.get(student, {})
            cells = []
            for e in exercises:
                report = row.get(e)
                cells += ["", ""] if report is None else [report["score"], _brief(report)]
            writer.writerow([student, people[student]["email"], *cells])


def _brief(report: dict) -> str:
    if report.get("not_graded"):
        return f"not graded: {report['not_graded']}"
    return "; ".join(f"{c['id']} {c['points']}/{c['max_points']}: {c['feedback']}"
                     for c in report["checks"])


def summary(out: Path, reports: list, file=None) -> None:
    """Where the results are, the mean score per exercise, and what was not graded."""
    print(f"results: {Path(out) / 'grades.csv'} (reports and feedback/ beside it)", file=file)
    by_exercise: dict = {}
    for report in reports:
        if report.get("exercise") and not report.get("not_graded"):
            by_exercise.setdefault(report["exercise"], []).append(report)
    for name, group in sorted(by_exercise.items()):
        mean = statistics.mean(r["score"] for r in group)
        print(f"{name}: {len(group)} graded, mean score {mean:.2f} / {group[0]['max_score']}",
              file=file)
    missing = [r for r in reports if r.get("not_graded")]
    print(f"not graded: {len(missing)}", file=file)
    for report in missing:
        print(f"  {report['file']}: {report['not_graded']}", file=file)


def merge(folders: list, out: Path, roster: Path | None = None) -> int:
    """Join the reports of several ``grade --shard`` output folders into ``out``.

    Raises:
        ValueError: no folder given, or one that is missing or holds no reports.
    """
    if not folders:
        raise ValueError("name the shards' output folders: grade merge OUT1 OUT2 ... --out OUT")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    merged = []
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise ValueError(f"no such folder: {folder}")
        reports = read_reports(folder)
        if not reports:
            raise ValueError(f"{folder} holds no grade reports")
        for report in reports:
            if folder.resolve() != out.resolve():
                write_report(out, report)
            merged.append(report)
    finish(out, read_roster(roster) if roster else None)
    summary(out, merged)
    return 0
