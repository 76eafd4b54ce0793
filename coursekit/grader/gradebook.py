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

Integrity: every report records the grading configuration (:func:`configuration`: a hash of the
solutions and hidden checks, the limits, the shard, the coursekit version) and, when the
instructor holds a key (``COURSEKIT_GRADER_KEY_FILE``, a file only the instructor can read), an
HMAC over its content. Each ``grade`` run writes ``OUT/shard.json``, a marker naming its shard and
its submissions, also for an empty shard. :func:`merge` refuses reports whose id is not a plain
file name, whose score is not the sum of its points or exceeds the maximum, whose HMAC does not
match, shards graded with another configuration, a shard given twice, a submission in two
shards, and a missing share of the ``N``. Names that came from the file system are escaped
(:func:`shown`) before they are printed, and every CSV cell that a spreadsheet would read as a
formula is quoted (:func:`csv_cell`).
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
import os
import re
import statistics
import sys
from pathlib import Path

from coursekit.grader.tasks import counted

__all__ = ["write_report", "read_reports", "finish", "summary", "merge", "read_roster",
           "student_of", "feedback_markdown", "csv_cell", "shown", "safe_id", "report_problems",
           "configuration", "sign", "instructor_key", "write_marker", "MARKER"]

REPORT_KEYS = {"submission", "exercise", "score", "max_score", "checks", "errors"}
SAFE_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}")
MARKER = "shard.json"
KEY_VARIABLE = "COURSEKIT_GRADER_KEY_FILE"


# ------------------------------------------------------------------------- names and cells

def shown(text) -> str:
    """``text`` safe to print on one line: undecodable bytes of a file name as ``\\xNN``,
    control characters (newlines, terminal escapes) as ``\\n``, ``\\x1b``.

    Example:
        >>> shown("a\\nb\\x1b[2Jc")
        'a\\\\nb\\\\x1b[2Jc'
    """
    text = str(text).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in text)


def safe_id(submission) -> str:
    """``submission`` if it is a plain file name of letters, digits, ``_ . -`` (not ``..``).

    Raises:
        ValueError: anything else (a path, an empty or hidden name).
    """
    if not isinstance(submission, str) or not SAFE_ID.fullmatch(submission) or ".." in submission:
        raise ValueError(f"a report's submission id {shown(str(submission))[:80]!r} is not a "
                         "plain file name")
    return submission


def csv_cell(value):
    """A value for a CSV cell that a spreadsheet reads as text, never as a formula (OWASP:
    cells starting with ``= + - @``, a tab or a carriage return get a leading ``'``).

    Example:
        >>> csv_cell("=HYPERLINK(1)"), csv_cell(-2.5), csv_cell("ok")
        ("'=HYPERLINK(1)", -2.5, 'ok')
    """
    if isinstance(value, str):
        value = shown(value) if not value.isprintable() else value
        if value[:1] in ("=", "+", "-", "@", "\t", "\r"):
            return "'" + value
    return value


def _writer(f):
    writer = csv.writer(f)

    class Safe:
        def writerow(self, row):
            writer.writerow([csv_cell(v) for v in row])

    return Safe()


# -------------------------------------------------------------------------------- integrity

def configuration(solutions: Path, checks_dir: Path | None, limits: dict, shard: str) -> dict:
    """What a report was graded with: the solutions and hidden checks (one hash), the limits,
    the shard ``K/N`` and the coursekit version."""
    from coursekit import __version__

    digest = hashlib.sha256()
    for folder in (Path(solutions), Path(checks_dir) if checks_dir else None):
        for path in sorted(folder.glob("*")) if folder and folder.is_dir() else []:
            if path.suffix in (".md", ".py") and path.is_file():
                digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return {"grading_sha256": digest.hexdigest(), "limits": dict(limits), "shard": shard,
            "coursekit_version": __version__}


def instructor_key() -> bytes | None:
    """The HMAC key from the file named by ``COURSEKIT_GRADER_KEY_FILE`` (None without one).

    Raises:
        ValueError: the variable names a file that cannot be read or is empty.
    """
    name = os.environ.get(KEY_VARIABLE)
    if not name:
        return None
    try:
        key = Path(name).read_bytes().strip()
    except OSError as error:
        raise ValueError(f"{KEY_VARIABLE}={name}: {error.strerror}") from None
    if len(key) < 16:
        raise ValueError(f"{KEY_VARIABLE}={name}: the key must hold at least 16 bytes")
    return key


def _mac(data: dict, key: bytes) -> str:
    body = {k: v for k, v in data.items() if k != "hmac"}
    text = json.dumps(body, sort_keys=True, ensure_ascii=True, allow_nan=False)
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def sign(data: dict, key: bytes | None) -> dict:
    """``data`` with ``"hmac"`` set over everything else (nothing changes without a key)."""
    if key:
        data["hmac"] = _mac(data, key)
    return data


def _signature_problem(data: dict, key: bytes | None) -> str | None:
    if not key:
        return None
    if not isinstance(data.get("hmac"), str) or not hmac.compare_digest(data["hmac"],
                                                                        _mac(data, key)):
        return "its HMAC does not match (changed after grading, or another key)"
    return None


def report_problems(report, key: bytes | None = None) -> list[str]:
    """Why ``report`` cannot be trusted (empty when it can): a malformed id, points outside
    ``0 .. max_points``, a score that is not the sum of the points or above the maximum, a bad
    HMAC (with ``key``)."""
    if not isinstance(report, dict) or not REPORT_KEYS <= set(report):
        return ["not a grade report"]
    problems = []
    try:
        safe_id(report["submission"])
    except ValueError as error:
        problems.append(str(error))
    checks = report["checks"] if isinstance(report["checks"], list) else []
    number = (int, float)
    try:
        points = [c["points"] for c in checks]
        maxima = [c["max_points"] for c in checks]
        if not all(type(p) in number and type(m) in number and 0 <= p <= m
                   for p, m in zip(points, maxima)):
            problems.append("a task's points are outside 0 .. its maximum")
        elif type(report["score"]) not in number or abs(report["score"] - sum(points)) > 0.011 \
                or report["score"] > report["max_score"] or (
                    report["exercise"] and report["max_score"] != sum(maxima)):
            problems.append(f"its score {str(report['score'])[:20]} is not the sum of its points "
                            f"({round(sum(points), 2)}) within the maximum "
                            f"{str(report['max_score'])[:20]}")
    except (KeyError, TypeError):
        problems.append("its checks are malformed")
    found = _signature_problem(report, key)
    return problems + ([found] if found else [])


def write_marker(out: Path, shard: str, config: dict, submissions: list,
                 key: bytes | None = None) -> None:
    """``OUT/shard.json``: which share ``K/N`` this folder holds, graded how, with which
    submissions (written by every run, also for an empty shard; a later run adds its ids)."""
    path = Path(out) / MARKER
    ids = set(submissions)
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
        if old.get("shard") == shard and old.get("config") == config:
            ids |= set(old.get("submissions", []))
        else:
            print(f"grade: {shown(out)} held reports graded as {shown(old.get('shard'))} with "
                  "another configuration; merge will refuse to mix them", file=sys.stderr)
    except (OSError, ValueError, AttributeError):
        pass
    _atomic(path, json.dumps(sign({"shard": shard, "config": config,
                                   "submissions": sorted(ids)}, key), indent=1))


def _atomic(path: Path, text: str) -> None:
    part = path.with_name(path.name + ".part")
    part.write_text(text, encoding="utf-8")
    os.replace(part, path)


def write_report(out: Path, report: dict, key: bytes | None = None) -> Path:
    """Write ``OUT/<id>.json`` as strict JSON (atomically, signed with ``key``); return its
    path. The id must be a plain file name (:func:`safe_id`), so nothing lands outside ``out``.
    A report of another file already under that id is kept: this one gets a free id.
    """
    import datetime

    report.setdefault("graded_at", datetime.datetime.now(datetime.timezone.utc)
                      .isoformat(timespec="seconds"))
    base = safe_id(report["submission"])
    path, n = Path(out) / f"{base}.json", 1
    while path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            break
        if not isinstance(old, dict) or old.get("file") == report.get("file"):
            break  # the same file graded again: its report is replaced
        n += 1
        report["submission"] = f"{base}-{n}"
        path = Path(out) / f"{report['submission']}.json"
    if n > 1:
        print(f"grade: {shown(base)} is the id of another file's report, kept; this one is "
              f"{report['submission']}", file=sys.stderr)
    sign(report, key)
    _atomic(path, json.dumps(report, indent=1, allow_nan=False, ensure_ascii=True))
    return path


def read_reports(folder: Path, problems: list | None = None) -> list[dict]:
    """Every trustworthy report in ``folder`` (other JSON files are left alone), sorted by id;
    a report that fails :func:`report_problems` or whose file name is not its id is left out
    and, with ``problems``, listed there."""
    reports = []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or not REPORT_KEYS <= set(data):
            continue
        found = report_problems(data)
        if not found and data["submission"] != path.stem:
            found = [f"its id {shown(data['submission'])!r} is not its file name"]
        if found:
            if problems is not None:
                problems.append(f"{shown(path)}: {'; '.join(found)}")
            continue
        reports.append(data)
    return reports


def read_table(path: Path, columns: tuple[str, ...], what: str) -> list[dict]:
    """The rows of a CSV an instructor or an LMS wrote (a byte-order mark allowed), which must
    hold ``columns``; ``what`` names the file in the errors ("the roster").

    Raises:
        ValueError: the file cannot be read, or lacks one of ``columns``.

    Example:
        >>> read_table(Path("no/such.csv"), ("file",), "the roster")
        Traceback (most recent call last):
        ValueError: cannot read the roster no/such.csv: No such file or directory
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except OSError as error:
        raise ValueError(f"cannot read {what} {path}: {error.strerror}") from None
    if not rows or not set(columns) <= set(rows[0]):
        raise ValueError(f"{what} {path} needs the columns "
                         f"{' and '.join(repr(c) for c in columns)}, found "
                         f"{sorted(rows[0]) if rows else 'no rows'}")
    return rows


def read_roster(path: Path) -> dict:
    """``{file name or relative path: {"student", "name", "email"}}`` from a roster CSV.

    Raises:
        ValueError: the file is missing, or lacks the ``file`` and ``student`` columns.
    """
    rows = read_table(path, ("file", "student"), "the roster")
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
    from coursekit.grader.roster import match  # loosely: LMS file names too

    entry, _ = match(roster or {}, Path(path))
    return entry["student"] if entry else None


def _fenced(text: str) -> list[str]:
    """Student text as a fenced block (a fence longer than any run of backticks in it), so
    none of it renders as Markdown or HTML: no links, images or scripts."""
    text = "\n".join(shown(line) for line in str(text).splitlines()) or " "
    fence = "`" * max(3, 1 + max((len(r) for r in re.findall(r"`+", text)), default=0))
    return [fence + "text", text, fence]


def feedback_markdown(report: dict) -> str:
    """The feedback file of one submission: every check's result, untruncated; whatever the
    student's code wrote (error messages) is fenced, never rendered."""
    lines = [f"# Feedback: {shown(report['submission'])}", ""]
    if report.get("student"):
        lines.append(f"Student: `{shown(report['student']).replace('`', '')}`  ")
    lines.append(f"Exercise: {shown(report.get('exercise') or 'not recognised')}  ")
    if report.get("penalty"):
        lines.append(f"Score before the late penalty: {report['raw_score']}; late penalty: "
                     f"-{report['penalty']} ({shown(report['late'])})  ")
    lines.append(f"Score: **{report['score']} / {report['max_score']}**")
    lines.append("")
    if report.get("not_graded"):
        lines += ["**Not graded:**", "", *_fenced(report["not_graded"]), ""]
    cell_errors = [e for e in report["errors"] if str(e).startswith("cell ")]
    if cell_errors:  # the first error explains most of what follows: say it first
        lines += ["**The first error while running your notebook** (fix it first):", "",
                  *_fenced(cell_errors[0]), ""]
    if report.get("flags"):
        lines += ["**For the instructor to look at:**", "", *_fenced("\n".join(report["flags"])),
                  ""]
    for check in report["checks"]:
        lines += [f"## {shown(check['id'])}: {check['points']} / "
                  f"{counted(check['max_points'], 'point')}", "", *_fenced(check["feedback"]), ""]
        for result in check.get("results", []):
            kind = "public" if result["public"] else "hidden"
            verdict = "passed" if result["passed"] else "failed"
            lines.append(f"- check {result['case']} ({kind}): {verdict}")
            detail = "\n".join(filter(None, [result.get("call"), result.get("message")]))
            if detail:
                lines += ["", *("  " + line for part in _fenced(detail)  # every line
                                for line in part.splitlines()), ""]  # inside the list item
            hint = result.get("hint") or ("" if result["passed"] or result["public"]
                                          else check.get("hint"))
            if hint:  # under the case it belongs to
                lines.append(f"  - hint: {hint}")
        lines.append("")
    if report["errors"]:
        lines += ["## Messages from running the notebook", "",
                  *_fenced("\n".join(report["errors"]))]
    return "\n".join(lines) + "\n"


def finish(out: Path, roster: dict | None = None, *, keep_latest: bool = False) -> list[dict]:
    """Rebuild everything in ``out`` from its reports; return the reports. A report that
    cannot be trusted is left out and named; one feedback file that cannot be written does not
    stop the others, and the CSVs are always written."""
    from coursekit.grader import instructor

    out = Path(out)
    problems: list = []
    reports = read_reports(out, problems)
    for line in problems:
        print(f"grade: left out {line}", file=sys.stderr)
    reports = instructor.prepare(out, reports)  # hand marks, late penalties (in memory)
    roster = roster or instructor.kept_roster(out)
    feedback = out / "feedback"
    feedback.mkdir(exist_ok=True)
    for report in reports:
        try:
            _atomic(feedback / f"{safe_id(report['submission'])}.md", feedback_markdown(report))
        except (OSError, ValueError, KeyError, TypeError) as error:
            print(f"grade: no feedback file for {shown(report.get('submission'))}: {error}",
                  file=sys.stderr)
    _grades_csv(out / "grades.csv", reports)
    from coursekit.grader.similarity import similar_pairs

    with open(out / "similarity.csv", "w", newline="", encoding="utf-8") as f:
        writer = _writer(f)
        writer.writerow(["exercise", "a", "b", "similarity", "shared_fingerprints", "variant"])
        for pair in similar_pairs(reports):
            writer.writerow(pair)
        from coursekit.grader.variants import variant_pairs

        for pair in variant_pairs(reports):  # answers of another student's variant
            writer.writerow(pair)
    if roster:
        _exports(out, reports, roster, keep_latest=keep_latest,
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
        writer = _writer(f)
        writer.writerow(["submission", "student", "exercise", "raw_score", "late_days",
                         "penalty", "score", "max_score", *task_ids, "not_graded", "errors",
                         "flags", "needs_review", "submitted_at"])
        for report in reports:
            points = {c["id"]: c["points"] for c in report["checks"]}
            writer.writerow([report["submission"], report.get("student") or "",
                             report["exercise"] or "", report.get("raw_score", report["score"]),
                             report.get("late_days", 0), report.get("penalty", 0),
                             report["score"], report["max_score"],
                             *[points.get(t, "") for t in task_ids],
                             report.get("not_graded") or "", len(report["errors"]),
                             "; ".join(report.get("flags") or []),
                             "; ".join(report.get("needs_review") or []),
                             report.get("submitted_at", "")])


def _latest_by_student(reports: list, keep_latest: bool = False) -> tuple[dict, list]:
    """``{student: {exercise: report}}`` and the conflicts: a student with several reports
    of one exercise gets none in the table (unless ``keep_latest``: the latest graded)."""
    table: dict = {}
    for report in sorted(reports, key=lambda r: str(r.get("graded_at", ""))):
        if report.get("student") and report.get("exercise"):
            table.setdefault(report["student"], {}).setdefault(report["exercise"], []).append(
                report)
    conflicts = [(student, exercise, found) for student, row in sorted(table.items())
                 for exercise, found in sorted(row.items()) if len(found) > 1]
    chosen = {student: {exercise: found[-1] for exercise, found in row.items()
                        if len(found) == 1 or keep_latest} for student, row in table.items()}
    return chosen, conflicts


def _exports(out: Path, reports: list, roster: dict, keep_latest: bool = False,
             task_columns: bool = False) -> None:
    """canvas.csv and moodle.csv (and conflicts.csv). A submission that was not graded leaves
    its cells blank (it is listed in the summary and report.html), never a recorded 0; with
    ``task_columns``, one column per task follows each exercise's total."""
    exercises = sorted({r["exercise"] for r in reports if r.get("exercise")})
    maximum = {r["exercise"]: r["max_score"] for r in reports if r.get("exercise")}
    table, conflicts = _latest_by_student(reports, keep_latest)
    people = {e["student"]: e for e in roster.values()}
    tasks = {e: {} for e in exercises}  # exercise -> {task id: max points}, in order
    for report in reports:
        if report.get("exercise"):
            for check in report["checks"]:
                tasks[report["exercise"]].setdefault(check["id"], check["max_points"])

    def columns(e):  # an exercise's total, then (option) its tasks
        return [e] + ([f"{e}: {t}" for t in tasks[e]] if task_columns else [])

    def cells(report, e):
        if report is None or report.get("not_graded"):
            return [""] * len(columns(e))
        points = {c["id"]: c["points"] for c in report["checks"]}
        return [report["score"]] + ([points.get(t, "") for t in tasks[e]]
                                    if task_columns else [])

    with open(out / "conflicts.csv", "w", newline="", encoding="utf-8") as f:
        writer = _writer(f)
        writer.writerow(["student", "exercise", "submission", "score", "graded_at", "exported"])
        for student, exercise, found in conflicts:
            for report in found:
                writer.writerow([student, exercise, report["submission"], report["score"],
                                 report.get("graded_at", ""),
                                 "yes" if keep_latest and report is found[-1] else "no"])
    for student, exercise, found in conflicts:
        print(f"grade: {shown(student)} has {len(found)} reports of {exercise} ("
              + ", ".join(shown(r["submission"]) for r in found) + "): "
              + ("the latest is exported" if keep_latest else "none is exported; pass "
                 "--keep-latest to export the latest") + " (see conflicts.csv)", file=sys.stderr)
    with open(out / "canvas.csv", "w", newline="", encoding="utf-8") as f:
        writer = _writer(f)
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
        writer = _writer(f)
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
    """The Moodle feedback cell: one line, HTML-escaped (Moodle renders the column as HTML)."""
    import html

    if report.get("not_graded"):
        text = f"not graded: {report['not_graded']}"
    else:
        text = "; ".join(f"{c['id']} {c['points']}/{c['max_points']}: {c['feedback']}"
                         for c in report["checks"])
        if report.get("penalty"):
            text = (f"raw {report['raw_score']}, late penalty -{report['penalty']} "
                    f"({report['late']}); " + text)
    return html.escape(shown(" ".join(text.split())), quote=True)  # arrays fold to one line


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
        print(f"  {shown(report.get('file', report['submission']))}: "
              f"{shown(report['not_graded'])}", file=file)
    for report in reports:
        if report.get("roster_problem"):
            print(f"  roster: {shown(report['roster_problem'])}", file=file)
    from coursekit.grader.report import summary_lines

    for line in summary_lines(reports, out):
        print(shown(line), file=file)


def _marker(folder: Path, key: bytes | None) -> dict:
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ValueError(f"{shown(folder)} holds no readable {MARKER}: not the output of "
                         "'grade --shard K/N'") from None
    shard = marker.get("shard") if isinstance(marker, dict) else None
    match = re.fullmatch(r"(\d+)/(\d+)", shard) if isinstance(shard, str) else None
    if not match or not 1 <= int(match.group(1)) <= int(match.group(2)) or not isinstance(
            marker.get("submissions"), list) or not isinstance(marker.get("config"), dict):
        raise ValueError(f"{shown(folder / MARKER)} is malformed")
    problem = _signature_problem(marker, key)
    if problem:
        raise ValueError(f"{shown(folder / MARKER)}: {problem}")
    marker["k"], marker["n"] = int(match.group(1)), int(match.group(2))
    return marker


def merge(folders: list, out: Path, roster: Path | None = None, *,
          keep_latest: bool = False, before_finish=None) -> int:
    """Join the reports of the ``grade --shard K/N`` output folders ``folders`` into ``out``.

    Every folder's marker (``shard.json``) must name one share of the same ``N``, graded with
    the same configuration; every share ``1 .. N`` must be there exactly once, every report
    must pass :func:`report_problems` (with the instructor's key when there is one) and be
    listed in its marker, and no submission may be in two shards. Nothing is written unless
    all of it holds.

    Raises:
        ValueError: with every problem found.
    """
    if not folders:
        raise ValueError("name the shards' output folders: grade merge OUT1 OUT2 ... --out OUT")
    key = instructor_key()
    out = Path(out)
    problems, shards, seen = [], {}, {}
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise ValueError(f"no such folder: {shown(folder)}")
        if folder.resolve() == out.resolve():
            raise ValueError(f"--out {shown(out)} is one of the shards: merge into a new folder")
        marker = _marker(folder, key)
        if marker["k"] in shards:
            problems.append(f"share {marker['k']}/{marker['n']} is given twice "
                            f"({shown(shards[marker['k']][0])} and {shown(folder)})")
            continue
        reports = []
        for path in sorted(folder.glob("*.json")):
            if path.name == MARKER:
                continue
            try:
                report = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                problems.append(f"{shown(path)} is not readable JSON")
                continue
            found = report_problems(report, key)
            if not found and report["submission"] != path.stem:
                found = ["its id is not its file name"]
            if not found and report.get("config") != marker["config"]:
                found = ["it was graded with another configuration than its shard"]
            if found:
                problems.append(f"{shown(path)}: {'; '.join(found)}")
                continue
            if report["submission"] in seen:
                problems.append(f"{report['submission']} is in two shards "
                                f"({shown(seen[report['submission']])} and {shown(folder)})")
            seen[report["submission"]] = folder
            reports.append(report)
        listed = set(marker["submissions"])
        got = {r["submission"] for r in reports}
        if listed - got:
            problems.append(f"{shown(folder)}: reports missing for "
                            f"{', '.join(sorted(map(shown, listed - got))[:10])}")
        if got - listed:
            problems.append(f"{shown(folder)}: reports not in its {MARKER}: "
                            f"{', '.join(sorted(got - listed)[:10])}")
        shards[marker["k"]] = (folder, marker, reports)
    markers = [m for _, m, _ in shards.values()]
    configs = {json.dumps({k: v for k, v in m["config"].items() if k != "shard"},
                          sort_keys=True) for m in markers}
    if len(configs) > 1 or len({m["n"] for m in markers}) > 1:
        problems.append("the shards were graded with different solutions, checks, limits, "
                        "versions or numbers of shards: " + "; ".join(
                            f"{shown(f)}: {m['shard']} {m['config'].get('grading_sha256', '')[:12]}"
                            for f, m, _ in shards.values()))
    elif markers:
        n = markers[0]["n"]
        missing = sorted(set(range(1, n + 1)) - set(shards))
        if missing:
            problems.append(f"share(s) {', '.join(f'{k}/{n}' for k in missing)} of {n} are "
                            "missing: merge every shard's folder")
    if problems:
        raise ValueError("refused, nothing was written:\n  " + "\n  ".join(problems))
    if not key:
        print("grade merge: the reports are not signed (no COURSEKIT_GRADER_KEY_FILE): a "
              "changed report would go unnoticed", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    merged = []
    for k in sorted(shards):
        for report in shards[k][2]:
            write_report(out, dict(report), key)
            merged.append(report)
    config = dict(markers[0]["config"], shard="1/1")
    write_marker(out, "1/1", config, [r["submission"] for r in merged], key)
    if before_finish is not None:  # the instructor's settings, once the merge is accepted
        before_finish(out)
    finish(out, read_roster(roster) if roster else None, keep_latest=keep_latest)
    summary(out, merged)
    return 0
