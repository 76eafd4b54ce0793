"""Grading real batches with ``python -m coursekit grade``: solutions score full marks, untouched
exercises score 0, and every hostile notebook of the issue gets the score of its honest work
without stopping the batch (exercises part). Two grade runs serve all the tests of this file."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from coursekit.grader import classroom
from coursekit.grader.tasks import ROOT, exercise_names, load_exercise

pytestmark = pytest.mark.slow
NAMES = exercise_names()
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "COURSEKIT_OFFLINE": "1"}
HIDDEN_CHECKS = '''# an instructor's extra case, kept outside the repository
CASES = {"bleu_brevity": [case(60, 80)]}
'''


def grade(paths, out, *options):
    return subprocess.run([sys.executable, "-m", "coursekit", "grade", *map(str, paths),
                           "--out", str(out), "--jobs", "2", *options],
                          capture_output=True, text=True, env=ENV, cwd=ROOT)


def reports(out: Path) -> dict:
    return {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    submissions = classroom.hostile_class("01_background", "05_evaluation")
    paths = classroom.write(submissions, folder / "in")
    done = grade(paths, folder / "out", "--timeout", "20", "--memory-mb", "4608",
                 "--exercise", "01_background")
    return done, submissions, reports(folder / "out")


@pytest.fixture(scope="module")
def honest(tmp_path_factory):
    folder = tmp_path_factory.mktemp("honest")
    inbox = folder / "in"
    subs = [classroom.Submission(f"solved-{n}", classroom.solved_notebook(n), 0, n)
            for n in NAMES]
    paths = classroom.write(subs, inbox)
    for name in NAMES:  # the untouched exercise, as handed out (recognised by its metadata)
        shutil.copy(ROOT / "exercises" / f"{name}.ipynb", inbox / f"untouched-{name}.ipynb")
        paths.append(inbox / f"untouched-{name}.ipynb")
    shutil.copy(inbox / "solved-03_vae.ipynb", inbox / "again-solved-03_vae.ipynb")
    paths.append(inbox / "again-solved-03_vae.ipynb")
    paths.append(ROOT / "solutions" / "04_training.ipynb")  # the solution notebook itself
    # right on every case of the repository, wrong on the instructor's hidden one, and
    # trying to read the hidden checks
    checks = folder / "checks"
    checks.mkdir()
    (checks / "05_evaluation.py").write_text(HIDDEN_CHECKS)
    sneaky = classroom.replace_body(classroom.solved_notebook("05_evaluation"), "brevity_penalty",
                                    "if c == 0:\n    return 0.0\n"
                                    "return 1.0 if c > r or c >= 50 else math.exp(1 - r / c)")
    classroom.add_cell(sneaky, f"try:\n    open({str(checks / '05_evaluation.py')!r}).read()\n"
                               "    raise RuntimeError('read the hidden checks')\n"
                               "except OSError:\n    pass")
    paths += classroom.write([classroom.Submission("sneaky", sneaky, 0, "05_evaluation")], inbox)
    done = grade(paths, folder / "out", "--timeout", "60", "--checks", str(checks))
    return done, reports(folder / "out"), folder / "out"


def test_hostile_batch_completes_with_exit_0(hostile):
    done, submissions, got = hostile
    assert done.returncode == 0, done.stderr[-2000:]
    assert set(got) == {s.name for s in submissions}
    assert "grading" in done.stderr  # the progress bar


@pytest.mark.parametrize("name", [s.name for s in classroom.hostile_class()])
def test_hostile_submission_scores_only_its_honest_work(hostile, name):
    _, submissions, got = hostile
    expected = next(s for s in submissions if s.name == name)
    report = got[name]
    assert report["score"] == expected.score, (expected.why, report)
    assert report["exercise"] == expected.exercise, (expected.why, report)
    assert report["max_score"] == load_exercise("01_background").max_score
    assert set(report) >= {"submission", "exercise", "score", "max_score", "checks", "errors"}
    for check in report["checks"]:
        assert set(check) == {"id", "points", "max_points", "passed", "feedback"}
        assert check["feedback"]
    if expected.score < report["max_score"]:  # the loss is explained
        assert any(not c["passed"] for c in report["checks"]) or report["errors"]


def test_hostile_feedback_names_what_happened(hostile):
    got = hostile[2]
    def text(name):
        return json.dumps(got[name])
    assert "time limit" in text("loop-function") and "time limit" in text("loop-top")
    assert "ended its own process" in text("kill-self")
    assert "signal 11" in text("segfault")
    assert "sys.exit" in text("exit-top")
    assert "File too large" in text("flood")
    assert "not plain data" in text("always-equal")
    assert "NaN" in text("nan")
    assert "not valid notebook JSON" in text("malformed")
    assert "05_evaluation" in text("other-exercise")
    assert "read the solution" not in text("escape")
    for path in ("/work/escape.txt", "/etc/escape.txt", "/escape.txt"):
        assert not os.path.exists(path)


def test_solutions_score_full_marks_and_exercises_zero(honest):
    done, got, _ = honest
    assert done.returncode == 0, done.stderr[-2000:]
    for name in NAMES:
        maximum = load_exercise(name).max_score
        assert got[f"solved-{name}"]["score"] == maximum, got[f"solved-{name}"]
        untouched = got[f"untouched-{name}"]
        assert untouched["exercise"] == name and untouched["score"] == 0
        assert untouched["max_score"] == maximum
        assert all("not attempted" in c["feedback"] for c in untouched["checks"]), untouched
    assert got["04_training"]["score"] == load_exercise("04_training").max_score


def test_same_submission_same_result(honest):
    got = honest[1]
    def stable(report):
        return {k: v for k, v in report.items() if k not in ("submission", "seconds",
                                                              "student_seconds")}
    assert stable(got["solved-03_vae"]) == stable(got["again-solved-03_vae"])


def test_hidden_checks_from_outside_the_repository(honest):
    report = honest[1]["sneaky"]
    brevity = next(c for c in report["checks"] if c["id"] == "bleu_brevity")
    assert not brevity["passed"] and "hidden" in brevity["feedback"]
    assert report["score"] == load_exercise("05_evaluation").max_score - brevity["max_points"]
    assert not any("hidden checks" in e for e in report["errors"]), report["errors"]


def test_grades_csv_has_a_row_per_submission_and_a_column_per_task(honest):
    _, got, out = honest
    with open(out / "grades.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(got)
    for name in NAMES:
        for task in load_exercise(name).tasks:
            assert task.id in rows[0]
    solved = next(r for r in rows if r["submission"] == "solved-02_gan.ipynb")
    assert int(solved["score"]) == int(solved["max_score"]) > 0


def test_a_broken_reference_is_the_grader_failing(tmp_path):
    solutions = tmp_path / "solutions"
    solutions.mkdir()
    text = (ROOT / "solutions" / "02_gan.md").read_text()
    (solutions / "02_gan.md").write_text(text.replace(
        "    return F.softplus(-d_fake).mean()\n", "    raise RuntimeError('broken')\n", 1))
    sub = classroom.write([classroom.Submission("x-02_gan", classroom.solved_notebook("02_gan"),
                                                0, "02_gan")], tmp_path / "in")
    done = grade(sub, tmp_path / "out", "--solutions", str(solutions), "--timeout", "30")
    assert done.returncode == 2 and "reference solution" in done.stderr


def test_bad_options_are_refused(tmp_path):
    done = grade([tmp_path / "x.ipynb"], tmp_path / "out", "--jobs", "0")
    assert done.returncode == 2 and "--jobs" in done.stderr


@pytest.mark.parametrize("namespaces", [True, False])
def test_sandbox_modes_keep_state_and_limits(monkeypatch, namespaces):
    """With and without namespaces (a box where unshare is refused), the same outcomes."""
    from coursekit.grader import sandbox
    from coursekit.grader.worker import decode, encode

    if namespaces and not sandbox._namespaces_work():
        pytest.skip("namespaces need root here")
    monkeypatch.setattr(sandbox, "_namespaces_work", lambda: namespaces)
    cells = ["import os\ndef f(x):\n    return [x, os.getuid()]", "os._exit(3)",
             "while True:\n    pass"]
    tasks = [{"id": "f", "function": "f", "torch": False, "driver": None,
              "cases": [{"args": encode((2,)), "kwargs": {}}]}]
    run = sandbox.run_notebook(cells, tasks, sandbox.Limits(timeout=4))
    assert [c["status"] for c in run.cells] == ["ok", "killed", "killed"]
    value, uid = decode(run.answers[(0, 0)]["output"])
    assert value == 2
    if os.geteuid() == 0:
        assert uid == sandbox.slot_uid(0) != 0  # never root
