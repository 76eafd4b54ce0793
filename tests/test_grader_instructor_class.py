"""A class graded end to end as a new instructor would: four submissions with LMS-style names,
a roster with a student who handed nothing in, a policy with a deadline, submission times from an
LMS export, written answers marked through ``grade review``, a re-grade that keeps the marks and
reuses the reference's answers, and the class report (exercises part). Runs in the sandbox where
one can be built, else with ``--unsafe`` (the notebooks here are the course's own)."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys

import pytest

import classroom
from coursekit.grader import sandbox
from coursekit.grader.tasks import ROOT, load_exercise

pytestmark = pytest.mark.slow
ENV_OPTIONS = [] if sandbox.mode() != "none" else ["--unsafe"]
NAME = "05_evaluation"
ROSTER = """file,student,name,email
erin.ipynb,s1,Erin Example,erin@x.org
bob/hw.ipynb,s2,Bob Builder,bob@x.org
carol-05_evaluation.ipynb,s3,Carol,carol@x.org
dan-05_evaluation.ipynb,s4,Dan,dan@x.org
fay.ipynb,s5,Fay,fay@x.org
"""
POLICY = """
[deadlines]
05_evaluation = "2026-10-01T12:00:00Z"
[penalty]
per_day = 0.25
cap = 0.5
"""
TIMES = """file,submitted_at
Erin Example - 05_evaluation (1).ipynb,2026-10-01T11:00:00Z
hw.ipynb,2026-10-02T13:00:00Z
carol-05_evaluation.ipynb,2026-09-30T10:00:00Z
dan-05_evaluation.ipynb,2026-09-30T10:00:00Z
"""


def grade(*args):
    return subprocess.run([sys.executable, "-m", "coursekit", "grade", *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT)


def rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("class")
    inbox = folder / "in"
    (inbox / "bob").mkdir(parents=True)
    solved = classroom.solved_notebook(NAME)
    (inbox / "Erin Example - 05_evaluation (1).ipynb").write_text(json.dumps(solved))
    (inbox / "bob" / "hw.ipynb").write_text(json.dumps(solved))
    shutil.copy(ROOT / "exercises" / f"{NAME}.ipynb", inbox / "carol-05_evaluation.ipynb")
    (inbox / "dan-05_evaluation.ipynb").write_text('{"cells": [')  # mangled by the upload
    for name, text in (("roster.csv", ROSTER), ("policy.toml", POLICY), ("times.csv", TIMES)):
        (folder / name).write_text(text)
    out = folder / "out"
    done = grade(inbox, "--out", out, "--roster", folder / "roster.csv", "--policy",
                 folder / "policy.toml", "--submitted", folder / "times.csv", "--task-columns",
                 "--quiet", "--exercise", NAME, *ENV_OPTIONS)
    return folder, out, done


def test_the_class_is_graded_and_reconciled_with_the_roster(graded):
    folder, out, done = graded
    assert done.returncode == 0, done.stderr[-3000:]
    by_student = {r["student"]: r for r in rows(out / "grades.csv")}
    assert set(by_student) == {"s1", "s2", "s3", "s4"}  # the LMS name matched Erin
    exercise = load_exercise(NAME)
    auto = sum(t.points for t in exercise.tasks)
    assert float(by_student["s1"]["score"]) == auto and by_student["s1"]["penalty"] == "0.0"
    bob = by_student["s2"]  # a day and an hour late: two started days, 50 %
    assert (float(bob["raw_score"]), bob["late_days"], float(bob["score"])) == \
        (auto, "2", auto / 2)
    assert by_student["s4"]["not_graded"]
    missing = rows(out / "missing.csv")
    assert [(m["problem"], m["student"]) for m in missing] == [("no submission", "s5")]
    canvas = {row[2]: row for row in csv.reader(open(out / "canvas.csv"))}
    header = canvas["SIS User ID"]
    assert header[5] == NAME and f"{NAME}: psnr" in header
    assert canvas["s4"][5] == "" and canvas["s5"][5] == ""  # ungraded is blank, never 0
    assert float(canvas["s2"][5]) == auto / 2
    for line in ("class report:", "late: 1, not graded: 1", "written answers to mark: 2"):
        assert line in done.stderr, done.stderr[-2000:]
    page = (out / "report.html").read_text()
    assert "data:image/png;base64" in page and "Late: 1" in page


def test_marks_from_the_review_survive_a_regrade(graded):
    folder, out, _ = graded
    done = grade("review", out)
    assert done.returncode == 0 and "review page:" in done.stdout, done.stderr
    page = out / "review" / f"{NAME}.why_not_psnr.html"
    assert page.exists()
    erin = next(json.loads(p.read_text()) for p in out.glob("*.json")
                if json.loads(p.read_text()).get("student") == "s1")
    marks = folder / "marks.json"
    marks.write_text(json.dumps({"kind": "coursekit-marks", "exercise": NAME,
                                 "task": "why_not_psnr", "marks": {erin["submission"]: {
                                     "criteria": [True, True], "comment": "Well argued.",
                                     "answer_sha256": erin["written"]["why_not_psnr"]["sha256"]
                                 }}}))
    assert grade("review", out, "--apply", marks).returncode == 0
    full = float(load_exercise(NAME).max_score)
    assert float(next(r for r in rows(out / "grades.csv") if r["student"] == "s1")["score"]) \
        == full
    kept = out / ".references" / f"{NAME}.json"
    before = kept.stat().st_mtime_ns
    again = grade(folder / "in" / "Erin Example - 05_evaluation (1).ipynb", "--out", out,
                  "--quiet", *ENV_OPTIONS)
    assert again.returncode == 0, again.stderr[-2000:]
    assert kept.stat().st_mtime_ns == before  # the reference's answers were reused
    erin_row = next(r for r in rows(out / "grades.csv") if r["student"] == "s1")
    assert float(erin_row["score"]) == full and erin_row["needs_review"] == ""
    assert "Well argued." in (out / "feedback" / f"{erin['submission']}.md").read_text()
    assert float(next(r for r in csv.reader(open(out / "canvas.csv")) if r[2] == "s1")[5]) \
        == full  # the roster and settings kept in OUT rebuilt the exports


# --------------------------------------------------------------------- per-student variants

@pytest.fixture(scope="module")
def variant_class(tmp_path_factory):
    """Three students released their own variant of exercise 5: Ann hands in hers solved, Ben
    hands in Ann's notebook, Cal hard-codes Ann's PSNR."""
    from coursekit.grader import protocol

    folder = tmp_path_factory.mktemp("variants")
    (folder / "roster.csv").write_text("file,student,name,email\nann.ipynb,s1,Ann,\n"
                                       "ben.ipynb,s2,Ben,\ncal.ipynb,s3,Cal,\n")
    (folder / "secret").write_text("a course secret that students never see\n")
    released = folder / "released"
    done = grade("release", NAME, "--roster", folder / "roster.csv", "--secret",
                 folder / "secret", "--out", released, *ENV_OPTIONS)
    assert done.returncode == 0, done.stderr[-2000:]
    meta = {s: json.loads((released / f"{s}-{NAME}.ipynb").read_text())["metadata"]
            for s in ("s1", "s2", "s3")}
    inbox = folder / "in"
    inbox.mkdir()

    def solved(student, owner):
        notebook = classroom.solved_notebook(NAME)
        notebook["metadata"]["coursekit"] = meta[owner]["coursekit"]
        return notebook

    (inbox / "ann.ipynb").write_text(json.dumps(solved("s1", "s1")))
    (inbox / "ben.ipynb").write_text(json.dumps(solved("s2", "s1")))
    ann_psnr = protocol.decode(meta["s1"]["coursekit"]["variant"]["public"]["psnr"]["cases"][0]
                               ["expected"])
    cal = classroom.replace_body(solved("s3", "s3"), "psnr", f"return {float(ann_psnr)!r}")
    (inbox / "cal.ipynb").write_text(json.dumps(cal))
    out = folder / "out"
    done = grade(inbox, "--out", out, "--roster", folder / "roster.csv", "--secret",
                 folder / "secret", "--quiet", *ENV_OPTIONS)
    return meta, out, done


def test_release_writes_each_students_own_variant(variant_class):
    meta, _, _ = variant_class
    variants = [m["coursekit"]["variant"] for m in meta.values()]
    assert len({v["seed"] for v in variants}) == 3
    assert all(v["public"]["psnr"]["cases"] for v in variants)
    assert meta["s1"]["coursekit"]["variant"]["public"]["psnr"]["cases"][0]["args"] != \
        meta["s2"]["coursekit"]["variant"]["public"]["psnr"]["cases"][0]["args"]


def test_grading_regenerates_variants_and_refuses_anothers_notebook(variant_class):
    _, out, done = variant_class
    assert done.returncode == 0, done.stderr[-3000:]
    graded = {r["student"]: r for r in rows(out / "grades.csv")}
    auto = sum(t.points for t in load_exercise(NAME).tasks)
    assert float(graded["s1"]["score"]) == auto
    assert "another student ('s1')" in graded["s2"]["not_graded"]
    assert float(graded["s3"]["psnr"]) < 1  # Ann's number is wrong for Cal's images
    flagged = [r for r in rows(out / "similarity.csv") if r["variant"]]
    assert [(r["a"], r["b"]) for r in flagged] == [("cal", "ann")]
