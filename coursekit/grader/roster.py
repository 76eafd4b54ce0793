"""Matching submissions to the roster, loosely, and saying who is missing (exercises part).

An LMS renames what students upload: ``Erin Example - 02_gan (1).ipynb`` (a second upload),
``exampleerin_1234_5678_02_gan.ipynb`` (Canvas), ``Erin Example_1234_assignsubmission_file_
02_gan.ipynb`` (Moodle). :func:`match` finds the roster entry of such a file: first the roster's
``file`` column exactly (name or end of path), then the same after normalising (case, spaces,
punctuation, copy counters), then the person's name or student id in what is left of the file
name once exercise names, numbers and LMS words are taken out. Two candidates are no match.

:func:`reconcile` lists roster students with no submission of an exercise graded in ``OUT`` and
submissions that no roster entry claims; ``OUT/missing.csv`` holds both.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

__all__ = ["normalise", "person_tokens", "match", "reconcile", "write_missing"]

LMS_WORDS = {"assignsubmission", "file", "onlinetext", "submission", "late", "copy", "ipynb",
             "final", "v"}


def normalise(text: str) -> str:
    """Lower case, a copy counter such as `` (1)`` dropped, punctuation as single spaces.

    Example:
        >>> normalise("Erin Example - 02_gan (1).ipynb")
        'erin example 02 gan'
    """
    text = re.sub(r"\.ipynb$", "", text.strip(), flags=re.I)
    text = re.sub(r"\s*\(\d+\)\s*$", "", text)
    return " ".join(re.split(r"[^0-9a-z]+", text.lower())).strip()


def person_tokens(file_name: str) -> list[str]:
    """What names a person in an LMS file name: exercise names, numbers and LMS words removed.

    Example:
        >>> person_tokens("Erin Example_1234_assignsubmission_file_02_gan (2).ipynb")
        ['erin', 'example']
    """
    stem = re.sub(r"\d\d_[a-z0-9]+(?:_[a-z][a-z0-9]*)*", " ", Path(file_name).name.lower())
    return [t for t in normalise(stem).split() if not t.isdigit() and t not in LMS_WORDS]


def match(roster: dict, path: Path) -> tuple[dict | None, str]:
    """The roster entry of submission ``path`` and how it was found (or why not).

    Example:
        >>> roster = {"erin.ipynb": {"student": "s7", "name": "Erin Example", "email": ""}}
        >>> match(roster, Path("in/Erin Example - 02_gan (1).ipynb"))[0]["student"]
        's7'
    """
    path = Path(path)
    for key, entry in roster.items():
        if key == path.name or key == path.stem or str(path).endswith("/" + key.lstrip("/")):
            return entry, "the roster's file name"
    stem = normalise(path.name)
    found = [e for k, e in roster.items() if normalise(Path(k).name) == stem]
    if len(found) == 1:
        return found[0], "the roster's file name, ignoring case and punctuation"
    tokens = person_tokens(path.name)
    joined = "".join(tokens)
    candidates = []
    for entry in {e["student"]: e for e in roster.values()}.values():
        name = normalise(entry.get("name") or "").split()
        ident = normalise(entry["student"])
        if name and (sorted(name) == sorted(tokens) or joined in ("".join(name),
                                                                  "".join(name[::-1]))):
            candidates.append(entry)
        elif ident and len(ident) >= 3 and ident.replace(" ", "") in tokens:
            candidates.append(entry)
    if len(candidates) == 1:
        return candidates[0], "the student's name or id in the file name"
    if len(candidates) > 1:
        return None, (f"{path.name!r} fits {len(candidates)} roster entries ("
                      + ", ".join(e["student"] for e in candidates) + ")")
    return None, f"{path.name!r} is not on the roster"


def reconcile(reports: list, roster: dict) -> list[dict]:
    """Rows of ``missing.csv``: roster students without a graded report of an exercise that
    others handed in, and reports that no roster student claims."""
    people = {e["student"]: e for e in roster.values()}
    exercises = sorted({r["exercise"] for r in reports if r.get("exercise")})
    handed = {(r.get("student"), r.get("exercise")) for r in reports}
    rows = []
    for exercise in exercises:
        for student in sorted(people):
            if (student, exercise) not in handed:
                rows.append({"problem": "no submission", "student": student,
                             "name": people[student].get("name", ""), "exercise": exercise,
                             "submission": "", "file": ""})
    for report in reports:
        if not report.get("student"):
            rows.append({"problem": "not on the roster", "student": "", "name": "",
                         "exercise": report.get("exercise") or "",
                         "submission": report["submission"],
                         "file": Path(report.get("file", "")).name})
    return rows


def write_missing(out: Path, rows: list) -> Path:
    """Write ``OUT/missing.csv`` (a header only when nothing is missing)."""
    path = Path(out) / "missing.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, ["problem", "student", "name", "exercise", "submission",
                                    "file"])
        writer.writeheader()
        writer.writerows(rows)
    return path
