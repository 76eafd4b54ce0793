"""Deadlines, extensions and late penalties, applied after grading (exercises part).

A policy file (TOML, given as ``grade --policy FILE``; the grader keeps a copy as
``OUT/instructor/policy.toml`` so that every rebuild of ``OUT`` applies it)::

    [deadlines]                      # per exercise, ISO 8601; without an offset: UTC
    01_background = "2026-10-05T23:59:00+00:00"

    [extensions]                     # days added to a deadline, per student id
    s102 = 2                         # every exercise
    s205 = {01_background = 3}       # one exercise

    [penalty]
    per_day = 0.10                   # share of the raw score lost per started day late
    cap = 0.50                       # at most this share is lost
    cutoff_days = 7                  # later than this past the (extended) deadline: 0
    grace_minutes = 10               # lateness under this is not late

Each submission's time comes from ``--submitted FILE`` (a CSV with columns ``file`` and
``submitted_at``, as an LMS export gives them) or, when the file does not list it, from the
notebook file's modification time; the report and ``grades.csv`` say which. The penalty is
``raw x min(cap, per_day x days late)``, rounded to 0.01, and the final score is raw - penalty.
"""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Policy", "load_policy", "read_times", "stamp", "apply_policy", "POLICY"]

POLICY = "policy.toml"          # the copy kept in OUT/instructor
UTC = datetime.timezone.utc


def _time(value, where: str) -> datetime.datetime:
    if isinstance(value, datetime.datetime):
        moment = value
    else:
        try:
            moment = datetime.datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{where}: {str(value)[:40]!r} is not an ISO 8601 time such as "
                             "2026-10-05T23:59:00+00:00") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass
class Policy:
    """Deadlines, extensions and the penalty schedule."""

    deadlines: dict = field(default_factory=dict)    # exercise -> aware datetime
    extensions: dict = field(default_factory=dict)   # student -> days, or {exercise: days}
    per_day: float = 0.0                             # share lost per started day late
    cap: float = 1.0                                 # largest share lost
    cutoff_days: float | None = None                 # past this many days late: 0
    grace_minutes: float = 0.0                       # lateness forgiven

    def due(self, exercise: str, student: str | None) -> datetime.datetime | None:
        """The deadline of ``student`` for ``exercise``, extension included."""
        if exercise not in self.deadlines:
            return None
        extra = self.extensions.get(student or "", 0)
        if isinstance(extra, dict):
            extra = extra.get(exercise, 0)
        return self.deadlines[exercise] + datetime.timedelta(days=float(extra))

    def penalty(self, raw: float, exercise: str, student: str | None,
                submitted: datetime.datetime) -> tuple[float, int, str]:
        """``(points lost, started days late, a note)`` for a submission.

        Example:
            >>> p = Policy({"01_x": _time("2026-10-05T12:00", "")}, per_day=0.1, cap=0.3)
            >>> p.penalty(10, "01_x", None, _time("2026-10-07T13:00", ""))
            (3.0, 3, '3 day(s) late: -30%')
        """
        due = self.due(exercise, student)
        if due is None:
            return 0.0, 0, ""
        late = (submitted - due).total_seconds() - 60 * self.grace_minutes
        if late <= 0:
            return 0.0, 0, ""
        days = math.ceil(late / 86400)
        if self.cutoff_days is not None and late > self.cutoff_days * 86400:
            return round(raw, 2), days, (f"{days} day(s) late, past the cut-off of "
                                         f"{self.cutoff_days:g} day(s): no points")
        share = min(self.cap, self.per_day * days)
        return round(raw * share, 2), days, f"{days} day(s) late: -{share:.0%}"


def load_policy(path: Path) -> Policy:
    """Read a policy file.

    Raises:
        ValueError: unreadable TOML, unknown sections or keys, or bad values (named).
    """
    import tomllib

    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise ValueError(f"cannot read the policy {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"the policy {path} is not valid TOML: {error}") from None
    unknown = set(data) - {"deadlines", "extensions", "penalty"}
    if unknown:
        raise ValueError(f"the policy {path} has unknown sections {sorted(unknown)}; known: "
                         "deadlines, extensions, penalty")
    deadlines = {str(k): _time(v, f"{path}: deadline of {k}")
                 for k, v in data.get("deadlines", {}).items()}
    extensions = {}
    for student, days in data.get("extensions", {}).items():
        values = days.values() if isinstance(days, dict) else [days]
        if not all(isinstance(d, (int, float)) and d >= 0 for d in values):
            raise ValueError(f"{path}: the extension of {student} must be days >= 0 (or a "
                             f"table of them per exercise), got {days!r}")
        extensions[str(student)] = days
    penalty = dict(data.get("penalty", {}))
    unknown = set(penalty) - {"per_day", "cap", "cutoff_days", "grace_minutes"}
    if unknown:
        raise ValueError(f"{path}: unknown [penalty] keys {sorted(unknown)}; known: per_day, "
                         "cap, cutoff_days, grace_minutes")
    policy = Policy(deadlines, extensions, **penalty)
    if not (0 <= policy.per_day <= 1 and 0 <= policy.cap <= 1 and policy.grace_minutes >= 0
            and (policy.cutoff_days is None or policy.cutoff_days >= 0)):
        raise ValueError(f"{path}: per_day and cap must lie in [0, 1], grace_minutes and "
                         "cutoff_days must be >= 0")
    return policy


def read_times(path: Path) -> dict:
    """``{file name: aware datetime}`` from a CSV with columns ``file`` and ``submitted_at``.

    Raises:
        ValueError: missing file or columns, or a time that is not ISO 8601.
    """
    from coursekit.grader.gradebook import read_table

    rows = read_table(path, ("file", "submitted_at"), "the submission times")
    return {Path(r["file"].strip()).name: _time(r["submitted_at"], f"{path}: {r['file']}")
            for r in rows if r["file"].strip()}


def stamp(report: dict, path: Path, times: dict) -> None:
    """Record when ``path`` was handed in (from ``times``, else the file's time) in ``report``."""
    name = Path(path).name
    if name in times:
        moment, source = times[name], "the submission times file"
    else:
        try:
            moment = datetime.datetime.fromtimestamp(Path(path).stat().st_mtime, UTC)
        except OSError:
            return
        source = "the file's modification time"
    report["submitted_at"] = moment.isoformat(timespec="seconds")
    report["submitted_from"] = source


def apply_policy(report: dict, policy: Policy | None) -> dict:
    """``report`` with ``raw_score``, ``late_days``, ``penalty``, ``late`` (a note) and
    ``score`` (the final score) set."""
    report["raw_score"] = report["score"]
    report.update(late_days=0, penalty=0.0, late="")
    if policy is None or not report.get("exercise") or report.get("not_graded") \
            or not report.get("submitted_at"):
        return report
    lost, days, note = policy.penalty(report["score"], report["exercise"],
                                      report.get("student"),
                                      _time(report["submitted_at"], report["submission"]))
    if days:
        note += f" (time from {report.get('submitted_from', 'unknown')})"
    report.update(late_days=days, penalty=lost, late=note,
                  score=round(report["score"] - lost, 2))
    return report
