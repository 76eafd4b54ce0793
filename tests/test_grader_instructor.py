"""The instructor's side of the grader without running notebooks: written answers and their
marks, review pages, late penalties, the roster, the exports, feedback, the class report and the
command line (exercises part). Reports are built here as the grader writes them."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from coursekit.grader import gradebook, instructor, policy, review, roster, written
from coursekit.grader.tasks import ROOT, exercise_names, load_exercise

RUBRIC = [written.criterion("names the dependence between pixels", 1, comment="shapes"),
          written.criterion("explains held-out data", 1, comment="memorising")]


class _Exercise:
    written = [written.Written("why", points=2, title="why it wins", rubric=RUBRIC)]


def notebook(answer: str | None, exercise: str = "01_background") -> bytes:
    cells = [{"cell_type": "code", "metadata": {}, "source": "x = 1", "outputs": [],
              "execution_count": None}]
    if answer is not None:
        cells.append({"cell_type": "markdown", "metadata": {"tags": ["answer:why"]},
                      "source": answer.splitlines(keepends=True)})
    return json.dumps({"cells": cells, "metadata": {"coursekit": {"exercise": exercise}},
                       "nbformat": 4, "nbformat_minor": 5}).encode()


def report(submission: str, answer: str | None = "An answer.", student: str | None = None,
           auto: float = 3.0, **extra) -> dict:
    data = {"submission": submission, "file": f"/in/{submission}.ipynb", "student": student,
            "exercise": "01_background", "score": auto, "max_score": 5, "not_graded": None,
            "errors": [], "graded_at": "2026-10-01T00:00:00+00:00",
            "checks": [{"id": "auto", "points": auto, "max_points": 3, "passed": auto == 3,
                        "cases_passed": 1, "cases": 1, "hint": "", "feedback": "ok",
                        "results": [{"case": 1, "public": True, "passed": auto == 3,
                                     "code": "ok"}]}]}
    written.attach(data, _Exercise, notebook(answer))
    data.update(extra)
    return data


def save(out: Path, reports: list) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for r in reports:
        gradebook.write_report(out, r)


def marks_file(path: Path, marks: dict, task: str = "why") -> Path:
    path.write_text(json.dumps({"kind": "coursekit-marks", "exercise": "01_background",
                                "task": task, "marks": marks}))
    return path


def rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# ------------------------------------------------------------------------------ written answers

def test_answers_are_read_from_tagged_cells_and_placeholders_are_empty():
    nb = json.loads(notebook("Because **shapes**."))
    assert written.read_answers(nb, ["why"]) == {"why": "Because **shapes**."}
    assert written.read_answers(json.loads(notebook(written.PLACEHOLDER)), ["why"]) == \
        {"why": None}
    assert written.read_answers({}, ["why"]) == {"why": None}


def test_a_rubric_must_add_up_to_the_points():
    with pytest.raises(ValueError, match="adds up to 2"):
        written.Written("why", points=3, rubric=RUBRIC)
    with pytest.raises(ValueError, match="needs a rubric"):
        written.Written("why", points=1, rubric=[])


def test_every_exercise_has_a_written_task_with_an_answer_cell():
    import jupytext

    assert len(exercise_names()) == 12
    for name in exercise_names():
        exercise = load_exercise(name)
        assert exercise.written, f"{name} has no written task"
        cells = jupytext.read(ROOT / "exercises" / f"{name}.ipynb").cells
        for task in exercise.written:
            answers = [c for c in cells if written.answer_task(c.metadata) == task.id]
            assert len(answers) == 1 and answers[0].source == written.PLACEHOLDER, name


def test_marks_score_written_tasks_and_a_regrade_keeps_them(tmp_path):
    out = tmp_path / "out"
    save(out, [report("ann", "Pixels depend on each other."), report("ben", None)])
    ann = gradebook.read_reports(out)[0]
    gradebook.finish(out)
    graded = {r["submission"]: r for r in rows(out / "grades.csv")}
    assert graded["ann"]["why"] == "0" and "not marked yet" in graded["ann"]["needs_review"]
    assert graded["ben"]["needs_review"] == ""  # no answer: nothing to mark
    mark = {"criteria": [True, False], "comment": "Say why held-out data.",
            "answer_sha256": ann["written"]["why"]["sha256"]}
    assert written.add_marks(out, [marks_file(tmp_path / "m.json", {"ann": mark})],
                             gradebook.read_reports(out)) == 1
    gradebook.finish(out)
    graded = {r["submission"]: r for r in rows(out / "grades.csv")}
    assert float(graded["ann"]["why"]) == 1 and float(graded["ann"]["score"]) == 4
    assert graded["ann"]["needs_review"] == ""
    text = (out / "feedback" / "ann.md").read_text()
    assert "met: names the dependence" in text and "missing: explains held-out data " \
        "(memorising)" in text and "Say why held-out data." in text
    # grading again with the same answer keeps the mark; a changed answer is flagged
    save(out, [report("ann", "Pixels depend on each other.")])
    gradebook.finish(out)
    assert float(rows(out / "grades.csv")[0]["why"]) == 1
    save(out, [report("ann", "Something else entirely.")])
    gradebook.finish(out)
    first = rows(out / "grades.csv")[0]
    assert float(first["why"]) == 1 and "changed after it was marked" in first["needs_review"]


@pytest.mark.parametrize("marks, words", [
    ({"nobody": {"criteria": [True, True], "answer_sha256": "0" * 64}}, "no submission"),
    ({"ann": {"criteria": [True], "answer_sha256": "0" * 64}}, "2 true/false values"),
    ({"ann": {"criteria": [True, 1], "answer_sha256": "0" * 64}}, "2 true/false values"),
    ({"ann": {"criteria": [True, True], "answer_sha256": "x"}}, "SHA-256"),
])
def test_bad_marks_are_refused_and_nothing_is_written(tmp_path, marks, words):
    out = tmp_path / "out"
    save(out, [report("ann")])
    with pytest.raises(ValueError, match=words):
        written.add_marks(out, [marks_file(tmp_path / "m.json", marks)],
                          gradebook.read_reports(out))
    assert not (out / written.MARKS).exists()


def test_review_pages_escape_and_sanitise_every_answer(tmp_path):
    out = tmp_path / "out"
    hostile = ("<script>document.title='owned'</script> <img src=x onerror=alert(1)> "
               "</script><script>alert(2)</script> [x](javascript:alert(3)) $\\alpha$")
    save(out, [report("ann", hostile, student='s1"><script>alert(4)</script>')])
    pages = review.write_pages(out, gradebook.finish(out), {})
    assert [p.name for p in pages] == ["01_background.why.html"]
    page = pages[0].read_text()
    body = page[page.index("<body>"):]
    # only the page's own two scripts (data and code) and MathJax's; none from the answer
    assert body.count("<script") == 2 and "<img" not in body
    assert "onerror=alert" not in body.replace("&lt;img src=x onerror=alert(1)&gt;", "")
    assert "javascript:" not in body.replace("(javascript:alert(3))", "")
    assert "script-src 'nonce-" in __import__("html").unescape(page) and '\\(\\alpha\\)' in page


# ---------------------------------------------------------------------------- late penalties

POLICY = """
[deadlines]
01_background = "2026-10-01T12:00:00Z"
[extensions]
s2 = 2
s3 = {01_background = 1}
[penalty]
per_day = 0.1
cap = 0.3
cutoff_days = 10
grace_minutes = 5
"""


@pytest.mark.parametrize("student, submitted, penalty, days", [
    ("s1", "2026-10-01T12:04:00Z", 0.0, 0),          # within the grace
    ("s1", "2026-10-01T12:06:00Z", 0.3, 1),          # one started day: 10 % of 3
    ("s1", "2026-10-05T12:06:00Z", 0.9, 5),          # capped at 30 %
    ("s2", "2026-10-03T11:00:00Z", 0.0, 0),          # a 2-day extension
    ("s3", "2026-10-02T13:00:00Z", 0.3, 1),          # 1 day for this exercise
    ("s1", "2026-10-12T12:04:00Z", 3.0, 11),         # past the cut-off: no points
])
def test_late_penalty_follows_the_policy(tmp_path, student, submitted, penalty, days):
    path = tmp_path / "policy.toml"
    path.write_text(POLICY)
    r = report("ann", None, student=student, submitted_at=submitted,
               submitted_from="the submission times file")
    r = policy.apply_policy(r, policy.load_policy(path))
    assert (r["raw_score"], r["penalty"], r["late_days"]) == (3.0, penalty, days)
    assert r["score"] == round(3.0 - penalty, 2)


@pytest.mark.parametrize("text, words", [
    ("[deadline]\n", "unknown sections"), ("[penalty]\nper_day = 2\n", "lie in"),
    ("[deadlines]\n01_x = \"soon\"\n", "ISO 8601"), ("[penalty]\nrate = 1\n", "unknown"),
    ("[extensions]\ns1 = -1\n", "days >= 0"), ("deadlines = [", "not valid TOML")])
def test_bad_policies_are_named(tmp_path, text, words):
    (tmp_path / "p.toml").write_text(text)
    with pytest.raises(ValueError, match=words):
        policy.load_policy(tmp_path / "p.toml")


def test_penalty_columns_in_grades_exports_and_feedback(tmp_path):
    out = tmp_path / "out"
    save(out, [report("ann", None, student="s1", submitted_at="2026-10-02T13:00:00+00:00",
                      submitted_from="the file's modification time"),
               report("ben", None, student="s2", submitted_at="2026-10-01T10:00:00+00:00")])
    (tmp_path / "roster.csv").write_text("file,student,name,email\nann.ipynb,s1,Ann,a@x\n"
                                         "ben.ipynb,s2,Ben,b@x\n")
    (tmp_path / "policy.toml").write_text(POLICY)
    instructor.remember(out, roster=tmp_path / "roster.csv", policy=tmp_path / "policy.toml")
    gradebook.finish(out)
    ann = next(r for r in rows(out / "grades.csv") if r["submission"] == "ann")
    assert (ann["raw_score"], ann["late_days"], ann["penalty"], ann["score"]) == \
        ("3.0", "2", "0.6", "2.4")
    canvas = list(csv.reader(open(out / "canvas.csv")))
    assert canvas[2][0] == "Ann" and canvas[2][5] == "2.4"
    moodle = {r["ID number"]: r for r in rows(out / "moodle.csv")}
    assert "late penalty -0.6" in moodle["s1"]["01_background feedback"]
    assert "late penalty" not in moodle["s2"]["01_background feedback"]
    text = (out / "feedback" / "ann.md").read_text()
    assert "Score before the late penalty: 3.0; late penalty: -0.6" in text
    assert "file's modification time" in text


# ---------------------------------------------------------------------- roster and exports

@pytest.mark.parametrize("file, student", [
    ("Erin Example - 01_background (1).ipynb", "s7"),
    ("exampleerin_1234_5678_01_background.ipynb", "s7"),
    ("Erin Example_1234_assignsubmission_file_01_background.ipynb", "s7"),
    ("ERIN.ipynb", "s7"), ("in/bob/hw.ipynb", "s2"), ("s2345-01_background.ipynb", "s2345"),
    ("Unknown Person - 01_background.ipynb", None), ("Ann Lee - 01_background.ipynb", None),
])
def test_loose_roster_matching(file, student):
    people = {"erin.ipynb": {"student": "s7", "name": "Erin Example", "email": ""},
              "bob/hw.ipynb": {"student": "s2", "name": "Bob", "email": ""},
              "x.ipynb": {"student": "s2345", "name": "", "email": ""},
              "a1.ipynb": {"student": "s8", "name": "Ann Lee", "email": ""},
              "a2.ipynb": {"student": "s9", "name": "Lee Ann", "email": ""}}
    entry, how = roster.match(people, Path(file))
    assert (entry["student"] if entry else None) == student, how


def test_missing_students_and_strangers_are_listed_and_ungraded_is_blank(tmp_path):
    out = tmp_path / "out"
    broken = report("cat", None, student="s3", auto=0.0,
                    not_graded="the file is not valid notebook JSON")
    save(out, [report("ann", None, student="s1"), report("zed", None), broken])
    (tmp_path / "roster.csv").write_text("file,student,name,email\nann.ipynb,s1,Ann,a@x\n"
                                         "cat.ipynb,s3,Cat,c@x\ndan.ipynb,s4,Dan,d@x\n")
    gradebook.finish(out, gradebook.read_roster(tmp_path / "roster.csv"))
    missing = rows(out / "missing.csv")
    assert {(m["problem"], m["student"] or m["submission"]) for m in missing} == \
        {("no submission", "s4"), ("not on the roster", "zed")}
    canvas = {row[2]: row for row in csv.reader(open(out / "canvas.csv"))}
    assert canvas["s3"][5] == "" and canvas["s1"][5] == "3.0"
    moodle = {r["ID number"]: r for r in rows(out / "moodle.csv")}
    assert moodle["s3"]["01_background"] == "" and "not graded" in \
        moodle["s3"]["01_background feedback"]


def test_task_columns_and_one_line_feedback_in_the_exports(tmp_path):
    out = tmp_path / "out"
    r = report("ann", None, student="s1", auto=1.0)
    r["checks"][0]["results"][0]["message"] = "got\n[[1 2]\n [3 4]]\nexpected\n[[1 2]\n [3 5]]"
    r["checks"][0]["feedback"] = "first failure:\n[[1 2]\n [3 4]]"
    r["errors"] = ["cell 2: ModuleNotFoundError: No module named 'foo'", "cell 3: NameError"]
    save(out, [r])
    (tmp_path / "roster.csv").write_text("file,student,name,email\nann.ipynb,s1,Ann,a@x\n")
    instructor.remember(out, roster=tmp_path / "roster.csv", task_columns=True)
    gradebook.finish(out)
    canvas = list(csv.reader(open(out / "canvas.csv")))
    assert canvas[0][5:] == ["01_background", "01_background: auto", "01_background: why"]
    assert canvas[1][5:] == ["5", "3", "2"] and canvas[2][5:] == ["1.0", "1.0", "0"]
    lines = (out / "moodle.csv").read_text().splitlines()
    assert len(lines) == 2 and "[[1 2] [3 4]]" in lines[1]
    text = (out / "feedback" / "ann.md").read_text()
    assert text.index("ModuleNotFoundError") < text.index("## auto")
    assert "  ```text\n  got\n  [[1 2]\n   [3 4]]\n  expected" in text  # in the list item
    assert "```text\nfirst failure:\n[[1 2]\n [3 4]]\n```" in text


# ----------------------------------------------------------------------- the class at a glance

def test_class_report_is_offline_and_escapes_what_students_wrote(tmp_path):
    out = tmp_path / "out"
    bad = report("bad", None, student="<b>x</b>", auto=1.0)
    bad["checks"][0]["results"][0]["message"] = "<script>alert(1)</script>"
    save(out, [report("ann", "answer", student="s2"), bad,
               report("cat", None, not_graded="empty file", auto=0.0)])
    gradebook.finish(out)
    page = (out / "report.html").read_text()
    assert page.count("<img src=\"data:image/png;base64,") == 2  # histogram, pass rates
    assert "<script" not in page and "&lt;script&gt;alert(1)" in page
    assert "http://" not in page and "https://" not in page
    assert "Not graded (blank in the LMS exports): 1" in page
    assert "Written answers to mark: 1" in page
    table = {r["task"]: r for r in __import__("coursekit.grader.report",
                                              fromlist=["x"]).task_table(
        instructor.prepare(out, gradebook.read_reports(out)))}
    assert table["auto"]["pass_rate"] == 0.5 and table["auto"]["mean"] == 2.0


def test_command_line_help_and_entry_points(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                              cwd=ROOT)

    merge = run("-m", "coursekit", "grade", "merge", "--help")
    assert merge.returncode == 0 and "grade merge" in merge.stdout and "SHARD_OUT" in \
        merge.stdout
    grade = run("-m", "coursekit.grader", "--help")
    assert grade.returncode == 0 and "default: 2" in grade.stdout and \
        "(default: 120.0)" in grade.stdout
    empty = run("-m", "coursekit", "grade", "review", str(tmp_path))
    assert empty.returncode == 2 and "holds no grade reports" in empty.stderr


# ------------------------------------------------------------------------- per-student variants

def test_variant_seeds_are_keyed_by_the_secret_and_differ_between_students():
    from coursekit.grader import variants

    secret = b"0123456789abcdef-course"
    seeds = {s: variants.seed_of(secret, s) for s in ("s1", "s2", "s3")}
    assert len(set(seeds.values())) == 3 and variants.seed_of(secret, "s1") == seeds["s1"]
    assert variants.seed_of(b"another secret of 16+ bytes", "s1") != seeds["s1"]
    assert all(0 <= s < 2**31 for s in seeds.values())


def test_variants_replace_the_cases_of_numeric_tasks_only():
    from coursekit.grader import variants

    for name in ("01_background", "05_evaluation", "09_diffusion"):
        exercise = load_exercise(name)
        assert exercise.variant is not None, name
        a, b = (variants.apply_variant(exercise, s) for s in (1, 2))
        changed = set(exercise.variant(1))
        assert changed and all(t.cases is c.cases for t, c in zip(exercise.tasks, a.tasks)
                               if t.id not in changed)
        for ta, tb in zip(a.tasks, b.tasks):
            if ta.id in changed:  # the inputs differ between students
                assert [variants.fingerprint(list(c.args)) for c in ta.cases] != \
                    [variants.fingerprint(list(c.args)) for c in tb.cases]


def test_a_notebook_with_another_students_variant_is_refused():
    from coursekit.grader import variants

    mine = {"coursekit": {"variant": {"student": "s1", "seed": 11}}}
    assert variants.check_metadata(mine, 11) is None
    assert variants.check_metadata({"coursekit": {}}, 11) is None
    assert "another student ('s1')" in variants.check_metadata(mine, 12)


def test_answers_matching_another_students_variant_are_flagged():
    from coursekit.grader import variants

    def one(name, seed, answers, expected):
        return {"submission": name, "exercise": "05_evaluation", "seed": seed,
                "variant_answers": {"psnr": answers}, "variant_expected": {"psnr": expected}}

    honest = one("ann", 1, ["a1", "a2"], ["a1", "a2"])
    copier = one("ben", 2, ["a1", "x"], ["b1", "b2"])  # ann's answer to case 1
    rows = variants.variant_pairs([honest, copier])
    assert len(rows) == 1 and rows[0][1:3] == ["ben", "ann"] and "case(s) 1" in rows[0][5]


def test_check_uses_the_variant_in_the_notebooks_metadata(tmp_path, monkeypatch, capsys):
    from coursekit.grader import tasks, variants
    from coursekit.grader.protocol import public_spec

    exercise = variants.apply_variant(load_exercise("01_background"), 77)
    task = next(t for t in exercise.tasks if t.id == "bits_per_dim")
    import math

    import numpy as np

    def bits(nll, num_dims, scale=1.0):
        return np.asarray(nll, np.float64) / (num_dims * math.log(2)) + math.log2(scale)

    expected = [bits(*c.args, **c.kwargs) for c in task.cases if c.public]
    metadata = {"coursekit": {"exercise": "01_background", "variant": {
        "student": "s9", "seed": 77, "public": {"bits_per_dim": public_spec(task, expected)}}}}
    path = tmp_path / "mine.ipynb"
    path.write_text(json.dumps({"cells": [], "metadata": metadata, "nbformat": 4,
                                "nbformat_minor": 5}))
    monkeypatch.setenv("COURSEKIT_NOTEBOOK", str(path))
    monkeypatch.delenv("COURSEKIT_GRADING", raising=False)
    assert tasks.check("bits_per_dim", bits) is True
    assert "the variant of s9" in capsys.readouterr().out
    first = task.cases[0].args
    assert tasks.check("bits_per_dim", lambda *a, **k: bits(*first)) is False


def test_merge_inherits_what_the_shards_kept(tmp_path):
    shard, out = tmp_path / "shard1" / "instructor", tmp_path / "out" / "instructor"
    shard.mkdir(parents=True)
    out.mkdir(parents=True)
    (shard / "policy.toml").write_text(POLICY)
    (shard / "roster.csv").write_text("file,student\na.ipynb,s1\n")
    (out / "roster.csv").write_text("file,student\nb.ipynb,s2\n")
    instructor.inherit(out.parent, [tmp_path / "shard2", shard.parent])
    assert (out / "policy.toml").read_text() == POLICY
    assert "s2" in (out / "roster.csv").read_text()  # its own roster wins


def test_release_and_grade_refuse_bad_secrets_and_exercises_without_variants(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "coursekit", "grade", *map(str, args)],
                              capture_output=True, text=True, cwd=ROOT)

    (tmp_path / "roster.csv").write_text("file,student\na.ipynb,s1\n")
    (tmp_path / "short").write_text("abc\n")
    (tmp_path / "secret").write_text("a long enough course secret\n")
    done = run("release", "05_evaluation", "--roster", tmp_path / "roster.csv", "--secret",
               tmp_path / "short", "--out", tmp_path / "r")
    assert done.returncode == 2 and "at least 16 bytes" in done.stderr
    done = run("release", "03_vae", "--roster", tmp_path / "roster.csv", "--secret",
               tmp_path / "secret", "--out", tmp_path / "r")
    assert done.returncode == 2 and "has no VARIANT" in done.stderr
    done = run(ROOT / "exercises" / "05_evaluation.ipynb", "--out", tmp_path / "o",
               "--secret", tmp_path / "short")
    assert done.returncode == 2 and "at least 16 bytes" in done.stderr


def test_reference_answers_are_kept_per_key_with_their_call_weights(tmp_path):
    from coursekit.grader import refcache

    solution = ROOT / "solutions" / "05_evaluation.md"
    key = refcache.digest(solution)
    assert key == refcache.digest(solution) != refcache.digest(solution, seed=3)
    refcache.store(tmp_path, "05_evaluation", key, {(0, 1): ([1.5, 2], 0.75)})
    assert refcache.load(tmp_path, "05_evaluation", key) == {(0, 1): ([1.5, 2], 0.75)}
    assert refcache.load(tmp_path, "05_evaluation", "another key") is None
    assert refcache.load(None, "05_evaluation", key) is None
