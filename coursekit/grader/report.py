"""The class at a glance: ``OUT/report.html`` and the command line's closing summary
(exercises part).

The page is one offline file: the distribution of final scores per exercise and each task's pass
rate as matplotlib figures embedded as PNG data, each task's pass rate and mean, the checks that
failed most often with their messages, late, ungraded and to-be-marked submissions, and the
similar pairs at or above :data:`SIMILARITY_THRESHOLD` (from ``similarity.csv``). It holds no
script and loads nothing. Every text taken from a submission is escaped.
"""

from __future__ import annotations

import base64
import collections
import csv
import html
import io
import statistics
from pathlib import Path

__all__ = ["write", "task_table", "failed_checks", "summary_lines", "SIMILARITY_THRESHOLD"]

SIMILARITY_THRESHOLD = 0.8
TOP_FAILURES = 10


def _graded(reports: list) -> list:
    return [r for r in reports if r.get("exercise") and not r.get("not_graded")]


def task_table(reports: list) -> list[dict]:
    """Per task: exercise, id, kind, submissions, pass rate, mean points, max points."""
    rows: dict = {}
    for report in _graded(reports):
        for check in report["checks"]:
            row = rows.setdefault((report["exercise"], check["id"]), {
                "exercise": report["exercise"], "task": check["id"],
                "kind": check.get("kind", "auto"), "max_points": check["max_points"],
                "points": [], "passed": 0})
            row["points"].append(check["points"])
            row["passed"] += bool(check["passed"])
    table = []
    for row in rows.values():
        n = len(row["points"])
        table.append({**{k: v for k, v in row.items() if k not in ("points", "passed")},
                      "submissions": n, "pass_rate": row["passed"] / n,
                      "mean": statistics.mean(row["points"])})
    return sorted(table, key=lambda r: (r["exercise"], r["task"]))


def failed_checks(reports: list, top: int = TOP_FAILURES) -> list[tuple]:
    """``(count, task, message)`` of the most frequent failures (hidden ones by reason; a task
    not attempted is no failed check)."""
    counts: collections.Counter = collections.Counter()
    for report in _graded(reports):
        for check in report["checks"]:
            for result in check.get("results", []):
                if not result["passed"] and result.get("code") != "not_attempted":
                    reason = result.get("message") or (
                        f"hidden check failed ({result.get('code', 'wrong')})")
                    counts[(check["id"], reason[:300])] += 1
    return [(n, task, message) for (task, message), n in counts.most_common(top)]


def _similar(out: Path) -> list[dict]:
    path = Path(out) / "similarity.csv"
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    keep = []
    for row in rows:
        try:
            if float(row.get("similarity", 0)) >= SIMILARITY_THRESHOLD or row.get("variant"):
                keep.append(row)
        except ValueError:
            continue
    return keep


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _figures(reports: list, table: list) -> list[tuple[str, str, str]]:
    """``(title, alt text, base64 PNG)`` of the score distributions and the pass rates."""
    from matplotlib.figure import Figure

    figures = []
    by_exercise: dict = {}
    for report in _graded(reports):
        by_exercise.setdefault(report["exercise"], []).append(report)
    for name, group in sorted(by_exercise.items()):
        figure = Figure(figsize=(5, 2.6))
        ax = figure.subplots()
        maximum = max(r["max_score"] for r in group) or 1
        ax.hist([r["score"] for r in group], bins=min(20, max(5, len(group))),
                range=(0, maximum), color="#4477aa", edgecolor="black", hatch="//")
        ax.set(xlabel="final score", ylabel="submissions",
               title=f"{name}: final scores of {len(group)} submission(s)")
        figures.append((f"Scores of {name}",
                        f"Histogram of the final scores of {name}, 0 to {maximum:g} points.",
                        _png(figure)))
    if table:
        figure = Figure(figsize=(6, 0.3 * len(table) + 1.2))
        ax = figure.subplots()
        labels = [f"{r['exercise']}: {r['task']}" for r in table]
        ax.barh(labels, [100 * r["pass_rate"] for r in table], color="#bbbbbb",
                edgecolor="black")
        ax.invert_yaxis()
        ax.set(xlabel="submissions with full points (%)", xlim=(0, 100),
               title="Pass rate per task")
        figures.append(("Pass rate per task", "Horizontal bars: the share of graded "
                        "submissions that got each task's full points.", _png(figure)))
    return figures


def summary_lines(reports: list, out: Path) -> list[str]:
    """The one-screen summary the command line ends with."""
    graded = _graded(reports)
    lines = [f"class report: {Path(out) / 'report.html'}"]
    by_exercise: dict = {}
    for report in graded:
        by_exercise.setdefault(report["exercise"], []).append(report)
    for name, group in sorted(by_exercise.items()):
        scores = [r["score"] for r in group]
        lines.append(f"  {name}: {len(group)} graded, median {statistics.median(scores):g}, "
                     f"mean {statistics.mean(scores):.2f} / {group[0]['max_score']}")
    hard = sorted(task_table(reports), key=lambda r: r["pass_rate"])[:3]
    if hard:
        lines.append("  hardest tasks: " + ", ".join(
            f"{r['task']} {r['pass_rate']:.0%}" for r in hard))
    failures = failed_checks(reports, 3)
    for n, task, message in failures:
        lines.append(f"  failed {n}x: {task}: {message[:100]}")
    late = [r for r in reports if r.get("late_days")]
    ungraded = [r for r in reports if r.get("not_graded")]
    review = [r for r in reports if r.get("needs_review")]
    lines.append(f"  late: {len(late)}, not graded: {len(ungraded)} (blank in the LMS "
                 f"exports), written answers to mark: {len(review)}, similar pairs: "
                 f"{len(_similar(out))}")
    return lines


def write(out: Path, reports: list) -> Path:
    """Write ``OUT/report.html``; return its path."""
    esc = html.escape
    table = task_table(reports)
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
             'img-src data:; style-src \'unsafe-inline\'">',
             "<title>Class report</title><style>body{font-family:system-ui,sans-serif;"
             "max-width:60rem;margin:1rem auto;padding:0 1rem} table{border-collapse:collapse}"
             " td,th{border:1px solid #999;padding:2px 6px;text-align:left}</style>",
             "</head><body><h1>Class report</h1>",
             f"<p>{len(reports)} submission(s), {len(_graded(reports))} graded.</p>"]
    for title, alt, png in _figures(reports, table):
        parts.append(f'<figure><img src="data:image/png;base64,{png}" alt="{esc(alt)}">'
                     f"<figcaption>{esc(title)}</figcaption></figure>")
    parts.append("<h2>Tasks</h2><table><tr><th>exercise</th><th>task</th><th>kind</th>"
                 "<th>submissions</th><th>pass rate</th><th>mean</th><th>max</th></tr>")
    for r in table:
        parts.append(f"<tr><td>{esc(r['exercise'])}</td><td>{esc(r['task'])}</td>"
                     f"<td>{esc(r['kind'])}</td><td>{r['submissions']}</td>"
                     f"<td>{r['pass_rate']:.0%}</td><td>{r['mean']:.2f}</td>"
                     f"<td>{r['max_points']:g}</td></tr>")
    parts.append("</table><h2>Checks failed most often</h2><table><tr><th>times</th>"
                 "<th>task</th><th>message</th></tr>")
    for n, task, message in failed_checks(reports):
        parts.append(f"<tr><td>{n}</td><td>{esc(task)}</td><td>{esc(message)}</td></tr>")
    parts.append("</table>")
    sections = [
        ("Late", [r for r in reports if r.get("late_days")],
         lambda r: f"{r.get('late')}; raw {r.get('raw_score')}, final {r['score']}"),
        ("Not graded (blank in the LMS exports)", [r for r in reports if r.get("not_graded")],
         lambda r: r["not_graded"]),
        ("Written answers to mark", [r for r in reports if r.get("needs_review")],
         lambda r: "; ".join(r["needs_review"]))]
    for title, rows, say in sections:
        parts.append(f"<h2>{esc(title)}: {len(rows)}</h2><ul>")
        parts += [f"<li>{esc(r['submission'])}"
                  f"{' (' + esc(str(r['student'])) + ')' if r.get('student') else ''}: "
                  f"{esc(str(say(r)))}</li>" for r in rows]
        parts.append("</ul>")
    similar = _similar(out)
    parts.append(f"<h2>Similar pairs (similarity at least {SIMILARITY_THRESHOLD:g}, or "
                 f"outputs of another student's variant): {len(similar)}</h2><ul>")
    parts += [f"<li>{esc(p.get('exercise', ''))}: {esc(p.get('a', ''))} and "
              f"{esc(p.get('b', ''))}: {esc(p.get('similarity', ''))}"
              f"{' ' + esc(p['variant']) if p.get('variant') else ''}</li>" for p in similar]
    parts.append("</ul></body></html>")
    path = Path(out) / "report.html"
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return path
