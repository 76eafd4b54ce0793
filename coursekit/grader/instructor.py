"""What an instructor adds on top of the grades: hand marks, late penalties, the roster's
reconciliation and the class report, applied each time ``OUT`` is rebuilt (exercises part).

``grade`` keeps copies of what it was given in ``OUT/instructor/`` (``roster.csv``,
``policy.toml``, ``submitted.csv``, ``settings.json``; ``marks.json`` lives there too, so no
other JSON file sits beside the reports), so that ``grade review OUT --apply`` and
``grade merge`` rebuild the same exports without being told again. :func:`prepare` turns the
reports on disk (the autograded truth, never rewritten by it) into the reports the gradebook
writes out: written tasks scored from ``OUT/instructor/marks.json`` (:mod:`coursekit.grader.written`), then the late penalty
(:mod:`coursekit.grader.policy`). :func:`complete` writes ``missing.csv``
(:mod:`coursekit.grader.roster`) and ``report.html`` (:mod:`coursekit.grader.report`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

from coursekit.grader.written import KEPT

__all__ = ["configure", "remember", "settings", "prepare", "complete", "kept_roster",
           "kept_times", "inherit"]


SETTINGS = "settings.json"
TIMES = "submitted.csv"


def configure(parser: argparse.ArgumentParser, submitted: bool = True) -> None:
    """The instructor's options of ``grade`` (and, without ``--submitted``, ``grade merge``)."""
    parser.add_argument("--policy", type=Path, default=None,
                        help="TOML file of deadlines, extensions and the late penalty; kept "
                             "in OUT as policy.toml")
    if submitted:
        parser.add_argument("--submitted", type=Path, default=None,
                            help="CSV with columns 'file' and 'submitted_at' (an LMS export); "
                                 "without it, a notebook's file time is its submission time")
    if submitted:
        parser.add_argument("--secret", type=Path, default=None,
                            help="file holding the course secret of per-student variants "
                                 "(never copied into OUT: give it again when grading again)")
    parser.add_argument("--task-columns", action="store_true", default=None,
                        help="one column per task beside each exercise's total in canvas.csv "
                             "and moodle.csv (remembered in OUT)")


def remember(out: Path, *, roster: Path | None = None, policy: Path | None = None,
             task_columns: bool | None = None, times: Path | None = None) -> None:
    """Keep copies of the roster, the policy and the submission times (``submitted.csv``),
    and the export settings, in ``out``.

    Raises:
        ValueError: a policy file that does not read.
    """
    from coursekit.grader.policy import POLICY, load_policy

    out = Path(out) / KEPT
    out.mkdir(parents=True, exist_ok=True)
    if roster is not None and Path(roster).resolve() != (out / "roster.csv").resolve():
        shutil.copyfile(roster, out / "roster.csv")
    if times is not None and Path(times).resolve() != (out / TIMES).resolve():
        shutil.copyfile(times, out / TIMES)
    if policy is not None:
        load_policy(policy)
        if Path(policy).resolve() != (out / POLICY).resolve():
            shutil.copyfile(policy, out / POLICY)
    if task_columns is not None:
        data = {**settings(out), "task_columns": bool(task_columns)}
        part = out / (SETTINGS + ".part")
        part.write_text(json.dumps(data), encoding="utf-8")
        os.replace(part, out / SETTINGS)


def inherit(out: Path, folders: list) -> None:
    """Copy the roster, policy, times and settings that shard folders kept into ``out``,
    where ``out`` has none of its own."""
    from coursekit.grader.policy import POLICY

    for name in ("roster.csv", POLICY, TIMES, SETTINGS):
        if (Path(out) / KEPT / name).exists():
            continue
        for folder in map(Path, folders):
            if (folder / KEPT / name).is_file():
                (Path(out) / KEPT).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(folder / KEPT / name, Path(out) / KEPT / name)
                break


def settings(out: Path) -> dict:
    """The export settings kept in ``out`` (``{}`` when none)."""
    path = Path(out) / KEPT / SETTINGS
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def kept_times(out: Path) -> Path | None:
    """The submission times file kept in ``out``, if any."""
    path = Path(out) / KEPT / TIMES
    return path if path.exists() else None


def kept_roster(out: Path) -> dict:
    """The roster kept in ``out`` (``{}`` when none)."""
    from coursekit.grader.gradebook import read_roster

    path = Path(out) / KEPT / "roster.csv"
    return read_roster(path) if path.exists() else {}


def prepare(out: Path, reports: list) -> list:
    """The reports as the gradebook writes them out: hand marks and late penalties applied
    (in memory; the reports on disk stay as graded)."""
    from coursekit.grader.policy import POLICY, apply_policy, load_policy
    from coursekit.grader.written import apply_marks, load_marks

    marks = load_marks(out)
    path = Path(out) / KEPT / POLICY
    policy = load_policy(path) if path.exists() else None
    return [apply_policy(apply_marks(report, marks), policy) for report in reports]


def complete(out: Path, reports: list, roster: dict) -> None:
    """Write what is built from the whole class: ``missing.csv`` (with a roster) and
    ``report.html``."""
    from coursekit.grader import report as class_report
    from coursekit.grader.roster import reconcile, write_missing

    if roster:
        write_missing(out, reconcile(reports, roster))
    class_report.write(out, reports)
