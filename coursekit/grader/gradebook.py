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
    from coursekit.grader.roster import match

    entry, _ = match(roster or {}, Path(path))
    return entry["student"] if entry else None


def feedback_markdown(report: dict) -> str:
    """The feedback file of one submission: every check's result, untruncated."""
    lines = [f"# Feedback: {report['submission']}", ""]
    if report.get("student"):
        lines.append(f"Student: {report['student']}  ")
    lines.append(f"Exercise: {report.get('exercise') or 'not recognised'}  ")
    if report.get("penalty"):
        lines.append(f"Score before the late penalty: {report['raw_score']}; late penalty: "
                     f"-{report['penalty']} ({report['late']})  ")
    lines.append(f"Score: **{report['score']} / {report['max_score']}**")
    lines.append("")
    if report.get("not_graded"):
        lines += [f"**Not graded:** {report['not_graded']}", ""]
    cell_errors = [e for e in report["errors"] if e.startswith("cell ")]
    if cell_errors:  # the first error explains most of what follows: say it first
        lines += ["**The first error while running your notebook** (fix it first):", "",
                  _fenced(cell_errors[0]), ""]
    for check in report["checks"]:
        lines += [f"## {check['id']}: {check['points']} / {check['max_points']} points", "",
                  _fenced(check["feedback"]) if "\n" in check["feedback"]
                  else check["feedback"], ""]
        for result in check.get("results", []):
            kind = "public" if result["public"] else "hidden"
            verdict = "passed" if result["passed"] else "failed"
            line = f"- check {result['case']} ({kind}): {verdict}"
            if result.get("call"):
                line += f"; call `{result['call']}`"
            if result.get("message"):
                message = result["message"]
                if "\n" in message:  # arrays: a fenced block keeps their layout
                    line += ":\n\n" + _indent(_fenced(message), "  ")
                else:
                    line += f"; {message}"
            lines.append(line)
        if check.get("hint") and any(not r["passed"] and not r["public"]
                                     for r in check.get("results", [])):
            lines.append(f"- hint: {check['hint']}")
        lines.append("")
    if report["errors"]:
        lines += ["## Messages from running the notebook", ""]
        lines += [f"- {e}" if "\n" not in e else "-\n" + _indent(_fenced(e), "  ")
                  for e in report["errors"]]
    return "\n".join(lines) + "\n"


def _fenced(text: str) -> str:
    """``text`` in a fenced code block whose fence no line of it can close."""
    fence = "```"
    while fence in text:
        fence += "`"
    return f"{fence}text\n{text}\n{fence}"


def _indent(text: str, prefix: str) -> str:
    return "\n".join(prefix + line if line else line for line in text.splitlines())


def finish(out: Path, roster: dict | None = None) -> list[dict]:
    """Rebuild everything in ``out`` from its reports; return the reports."""
    from coursekit.grader import instructor

    out = Path(out)
    reports = instructor.prepare(out, read_reports(out))  # hand marks, late penalties
    roster = roster or instructor.kept_roster(out)
    feedback = out / "feedback"
    feedback.mkdir(exist_ok=True)
    for report in reports:
        (feedback / f"{report['submission']}.md").write_text(feedback_markdown(report),
                                                             encoding="utf-8")
    _grades_csv(out / "grades.csv", reports)
    from coursekit.grader.similarity import similar_pairs

    with open(out / "similarity.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["exercise", "a", "b", "similarity", "shared_fingerprints", "variant"])
        for pair in similar_pairs(reports):
            writer.writerow(pair)
        from coursekit.grader.variants import variant_pairs

        writer.writerows(variant_pairs(reports))  # answers of another student's variant
    if roster:
        _exports(out, reports, roster,
                 task_columns=instructor.settings(out).get("task_columns", False))
    instructor.complete(out, reports, roster)  # missing.csv, report.html
    return reports


def _grades_csv(path: Path, reports: list) -> None:
    task_ids = []
    for report in reports:
        for check in report["checks"]:
            if check["id"] not in task_ids:
                task_ids.append(check["id"])
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["submission", "student", "exercise", "raw_score", "late_days",
                         "penalty", "score", "max_score", *task_ids, "not_graded",
                         "needs_review", "submitted_at", "errors"])
        for report in reports:
            points = {c["id"]: c["points"] for c in report["checks"]}
            writer.writerow([report["submission"], report.get("student") or "",
                             report["exercise"] or "", report.get("raw_score", report["score"]),
                             report.get("late_days", 0), report.get("penalty", 0),
                             report["score"], report["max_score"],
                             *[points.get(t, "") for t in task_ids],
                             report.get("not_graded") or "",
                             "; ".join(report.get("needs_review") or []),
                             report.get("submitted_at", ""), len(report["errors"])])


def _latest_by_student(reports: list) -> dict:
    """``{student: {exercise: report}}``, the latest graded report of each pair."""
    table: dict = {}
    for report in sorted(reports, key=lambda r: r.get("graded_at", "")):
        if report.get("student") and report.get("exercise"):
            table.setdefault(report["student"], {})[report["exercise"]] = report
    return table


def _exports(out: Path, reports: list, roster: dict, task_columns: bool = False) -> None:
    """canvas.csv and moodle.csv. A submission that was not graded leaves its cells blank (it
    is listed in the summary and report.html), never a recorded 0."""
    exercises = sorted({r["exercise"] for r in reports if r.get("exercise")})
    maximum = {r["exercise"]: r["max_score"] for r in reports if r.get("exercise")}
    tasks = {e: {} for e in exercises}  # exercise -> {task id: max points}, in order
    for report in reports:
        if report.get("exercise"):
            for check in report["checks"]:
                tasks[report["exercise"]].setdefault(check["id"], check["max_points"])
    table = _latest_by_student(reports)
    people = {e["student"]: e for e in roster.values()}

    def columns(e):  # an exercise's total, then (option) its tasks
        return [e] + ([f"{e}: {t}" for t in tasks[e]] if task_columns else [])

    def cells(report, e):
        if report is None or report.get("not_graded"):
            return [""] * len(columns(e))
        points = {c["id"]: c["points"] for c in report["checks"]}
        return [report["score"]] + ([points.get(t, "") for t in tasks[e]]
                                    if task_columns else [])

    with open(out / "canvas.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["Student", "ID", "SIS User ID", "SIS Login ID", "Section",
                         *[c for e in exercises for c in columns(e)]])
        writer.writerow(["    Points Possible", "", "", "", "",
                         *[m for e in exercises for m in [maximum[e]] + (
                             list(tasks[e].values()) if task_columns else [])]])
        for student in sorted(people):
            row = table.get(student, {})
            writer.writerow([people[student]["name"] or student, "", student, "", "",
                             *[c for e in exercises for c in cells(row.get(e), e)]])
    with open(out / "moodle.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["ID number", "Email address",
                         *[c for e in exercises for c in columns(e) + [f"{e} feedback"]]])
        for student in sorted(people):
            row = table.get(student, {})
            out_cells = []
            for e in exercises:
                report = row.get(e)
                out_cells += cells(report, e) + ["" if report is None else _brief(report)]
            writer.writerow([student, people[student]["email"], *out_cells])


def _brief(report: dict) -> str:
    """One line of feedback for an LMS cell (multi-line messages folded)."""
    if report.get("not_graded"):
        text = f"not graded: {report['not_graded']}"
    else:
        text = "; ".join(f"{c['id']} {c['points']}/{c['max_points']}: {c['feedback']}"
                         for c in report["checks"])
        if report.get("penalty"):
            text = (f"raw {report['raw_score']}, late penalty -{report['penalty']} "
                    f"({report['late']}); " + text)
    return " ".join(text.split())


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
    unmatched = [r for r in reports if r.get("roster_problem")]
    for report in unmatched:
        print(f"  roster: {report['roster_problem']}", file=file)
    from coursekit.grader.report import summary_lines

    for line in summary_lines(reports, out):
        print(line, file=file)


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
