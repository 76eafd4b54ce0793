"""The grader's pieces that need no sandbox: the data format, judging, stubs, identification,
the exercises being up to date, in-notebook feedback and the table of contents (exercises part)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import classroom
from coursekit.grader import assign, grade, gradebook, protocol, similarity, tasks
from tools import toc
from coursekit.grader.tasks import ROOT, compare, exercise_names, load_exercise

NAMES = exercise_names()


# ---------------------------------------------------------------------------- the data format

def roundtrip(value):
    return protocol.decode(json.loads(json.dumps(protocol.encode(value))))


def test_plain_data_survives_the_roundtrip():
    import torch

    value = {"a": (1, 2.5, "x", None, True), "arr": np.arange(6, dtype=np.int32).reshape(2, 3),
             "t": torch.tensor([1.5, float("nan")]), "inf": float("inf"), "l": [np.float32(2)]}
    back = roundtrip(value)
    assert back["a"] == (1, 2.5, "x", None, True)
    assert back["arr"].dtype == np.int32 and back["arr"].shape == (2, 3)
    assert np.isnan(back["t"][1]) and back["t"][0] == 1.5 and back["inf"] == float("inf")


@pytest.mark.parametrize("value", [
    type("Anything", (float,), {"__eq__": lambda s, o: True, "__hash__": float.__hash__})(1.0),
    object(), np.array([object()]), {1: 2}, lambda: 0,
])
def test_behaviour_does_not_cross_the_boundary(value):
    with pytest.raises(protocol.EncodeError):
        protocol.encode(value)


@pytest.mark.parametrize("forged", [
    {"__ndarray__": "AAAA", "dtype": "object", "shape": [1]},
    {"__ndarray__": "AAAAAAAAAAA=", "dtype": "float64", "shape": [5]},
    {"__ndarray__": "AAAA", "dtype": "float32", "shape": [-1]},
])
def test_forged_arrays_are_refused(forged):
    with pytest.raises(ValueError):
        protocol.decode(forged)


# ------------------------------------------------------------------------------------ judging

def test_compare_accepts_within_tolerance_and_explains_failures():
    assert compare(np.array([1.0, 2.0]), np.array([1.0, 2.0 + 1e-7])) is None
    assert "shape (3,)" in compare(np.zeros(2), np.zeros(3))
    assert "NaN" in compare(np.ones(2), np.array([1.0, np.nan]))
    assert "index (1,)" in compare(np.array([1.0, 2.0]), np.array([1.0, 3.0]))
    assert compare(float("inf"), float("inf")) is None
    assert compare(float("inf"), 1e300) is not None
    assert compare((2, 4), [2, 4]) is None
    assert "numeric" in compare(1.0, "1.0")
    hidden = compare(np.array([5.0]), np.array([4.0]), reveal=False)
    assert "5" not in hidden and "4" not in hidden and "error" not in hidden
    assert "keys" in compare({"a": 1.0}, {"b": 1.0})


# -------------------------------------------------------------------------------------- stubs

def test_stub_keeps_signature_and_docstring():
    source = ('def f(x):\n    """Doc."""\n    ### BEGIN SOLUTION\n    return x + 1\n'
              '    ### END SOLUTION\n')
    stub = assign.stub_source(source)
    assert stub.startswith('def f(x):\n    """Doc."""\n    # YOUR CODE HERE\n')
    assert "return x + 1" not in stub and "raise NotImplementedError" in stub
    namespace = {}
    exec(stub, namespace)
    with pytest.raises(NotImplementedError):
        namespace["f"](1)


@pytest.mark.parametrize("source", ["### END SOLUTION", "### BEGIN SOLUTION\nx = 1",
                                    "### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION"])
def test_unbalanced_markers_are_errors(source):
    with pytest.raises(ValueError):
        assign.stub_source(source)


# -------------------------------------------------------------------------- the exercises

def test_every_chapter_has_an_exercise_with_three_to_six_tasks():
    assert {"01_background", "02_gan", "03_vae", "04_training", "05_evaluation"} <= set(NAMES)
    ids = []
    for name in NAMES:
        exercise = load_exercise(name)
        # three to six tasks; seven when one is a training task judged by the grader (Exercise
        # 11 has six pieces of exactness, then trains the model they describe)
        judged = any(t.judge is not None for t in exercise.tasks)
        assert 3 <= len(exercise.tasks) <= 6 + judged, name
        ids += [t.id for t in exercise.tasks]
        source = "\n".join(exercise.cells)
        for task in exercise.tasks:
            assert f"def {task.function}(" in source, (name, task.function)
    assert len(ids) == len(set(ids)), "task ids must be unique across the course"


@pytest.mark.parametrize("name", NAMES)
def test_exercise_holds_no_solution_code(name):
    text = (ROOT / "exercises" / f"{name}.ipynb").read_text(encoding="utf-8")
    assert not (ROOT / "exercises" / f"{name}.md").exists(), "one file per exercise"
    solution = (ROOT / "solutions" / f"{name}.md").read_text(encoding="utf-8")
    assert "### BEGIN SOLUTION" not in text and "grading" not in text
    assert 'summary("' + name + '")' in text or f"summary('{name}')" in text  # last cell
    hidden = solution.split("### BEGIN SOLUTION")[1].split("### END SOLUTION")[0]
    assert hidden.strip() and hidden not in text
    notebook = json.loads((ROOT / "exercises" / f"{name}.ipynb").read_text(encoding="utf-8"))
    assert notebook["metadata"]["coursekit"] == {"exercise": name}
    assert all(not c.get("outputs") for c in notebook["cells"] if c["cell_type"] == "code")


def test_exercises_are_up_to_date_with_the_solutions():
    done = subprocess.run([sys.executable, "-m", "coursekit", "assign", "--check"],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr


def test_check_detects_stale_exercises(tmp_path, monkeypatch):
    monkeypatch.setattr(assign, "EXERCISES", tmp_path)
    (tmp_path / "02_gan.ipynb").write_text("stale", encoding="utf-8")
    args = assign.configure.__globals__["argparse"].Namespace(names=["02_gan"], check=True,
                                                               run=False)
    assert assign.run(args) == 1


# --------------------------------------------------------------------- feedback in the notebook

def test_check_reports_pass_fail_and_not_attempted(capsys):
    import math

    def right(c, r):
        return 0.0 if c == 0 else (1.0 if c > r else math.exp(1 - r / c))

    def stub(c, r):
        raise NotImplementedError

    assert tasks.check("bleu_brevity", right) is True
    assert tasks.check("bleu_brevity", lambda c, r: 1.0) is False
    assert tasks.check("bleu_brevity", stub) is None
    out = capsys.readouterr().out
    assert "public checks passed" in out and "failed" in out and "not attempted" in out
    with pytest.raises(ValueError, match="unknown task"):
        tasks.check("no_such_task", right)


def test_check_runs_drivers_in_the_notebook(capsys):
    import torch.nn.functional as F

    def no_update(G, D, opt_G, opt_D, x, z):
        return F.softplus(-D(x)).mean().item(), 0.0

    assert tasks.check("train_gan_step", no_update) is False
    assert "check 1 failed" in capsys.readouterr().out


# ---------------------------------------------------------------------- reading submissions

def test_identify_prefers_metadata_then_file_name():
    known = ["01_background", "03_vae"]
    assert grade.identify({"coursekit": {"exercise": "03_vae"}}, "01_background.ipynb",
                          known)[0] == "03_vae"
    assert grade.identify({}, "bob-01_background.ipynb", known)[0] == "01_background"
    assert grade.identify({}, "homework.ipynb", known)[0] is None
    assert grade.identify({}, "homework.ipynb", known)[1].kind == "not_found"  # a Source
    assert grade.identify({"coursekit": {"exercise": "../etc"}}, "03_vae.ipynb", known)[0] is None


@pytest.mark.parametrize("data, words", [(b"", "empty"), (b"{not json", "not valid"),
                                         (b"[1, 2]", "not a notebook"),
                                         (b"\xff\xfe", "not valid")])
def test_unreadable_notebooks_are_reported(data, words):
    with pytest.raises(grade.NotebookError, match=words):
        grade.read_code_cells(data)


def test_code_cells_are_read_from_list_or_string_sources():
    cells, metadata = grade.read_code_cells(json.dumps({
        "metadata": {"coursekit": {"exercise": "x"}},
        "cells": [{"cell_type": "code", "source": ["a = 1\n", "b = 2"]},
                  {"cell_type": "markdown", "source": "text"},
                  {"cell_type": "code", "source": "c = 3"}, "junk"]}).encode())
    assert cells == ["a = 1\nb = 2", "c = 3"] and metadata["coursekit"]["exercise"] == "x"


def test_hostile_class_covers_the_issue_list():
    names = {s.name for s in classroom.hostile_class()}
    assert {"loop-top", "loop-function", "memory-top", "memory-function", "exit-top", "os-exit",
            "kill-self", "segfault", "fork-bomb", "fake-score", "flood", "monkeypatch",
            "always-equal", "nan", "escape", "metadata-points", "malformed", "empty-file",
            "empty-notebook", "other-exercise"} <= names


def test_toc_without_solutions():
    import yaml

    full = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    captions = [p["caption"] for p in full["parts"]]
    assert {"Exercises", "Solutions"} <= set(captions)
    assert captions.index("Solutions") < captions.index("Back matter")
    reduced = toc.without_solutions(full)
    assert [p["caption"] for p in reduced["parts"]] == [c for c in captions if c != "Solutions"]
    files = [c["file"] for p in full["parts"] for c in p["chapters"]]
    for name in NAMES:
        assert f"exercises/{name}" in files and f"solutions/{name}" in files


def test_a_gan_step_without_detach_fails_even_when_gradients_are_cleared(capsys):
    import torch.nn.functional as F

    def no_detach(G, D, opt_G, opt_D, x, z):
        fake = G(z)
        opt_D.zero_grad()
        d_loss = F.softplus(-D(x)).mean() + F.softplus(D(fake)).mean()  # no detach
        d_loss.backward(retain_graph=True)
        opt_D.step()
        opt_G.zero_grad()  # clears what leaked into G: the parameters end up right
        g_loss = F.softplus(-D(fake)).mean()
        g_loss.backward()
        opt_G.step()
        return d_loss.item(), g_loss.item()

    assert tasks.check("train_gan_step", no_detach) is False
    out = capsys.readouterr().out  # in the student's terms, not the driver's dict keys
    assert "backward passes that reached G's output" in out and "answer[" not in out
    assert "gan_step(G=Sequential(Linear(" in out


# ------------------------------------------------------------------------ one protocol

def test_numpy_and_torch_scalars_in_a_list_are_numbers():
    import torch

    for got in ([np.float64(1), np.float64(2), np.float64(3)], [np.float32(1), 2, 3.0],
                [torch.tensor(1.0), torch.tensor(2.0), torch.tensor(3.0)],
                list(np.array([1.0, 2.0, 3.0])), [np.int64(1), np.int64(2), np.int64(3)]):
        assert compare([1.0, 2.0, 3.0], roundtrip(got)) is None, got
        assert compare(np.array([1.0, 2.0, 3.0]), roundtrip(got)) is None, got
    assert roundtrip(np.float32(2.5)) == 2.5 and roundtrip(np.array(2.5)).shape == ()


def test_outcomes_are_reason_codes_and_hidden_ones_say_nothing_more():
    assert protocol.judge(np.ones(3), {"output": protocol.encode(np.ones(3))}).passed
    wrong = protocol.judge(np.ones(3), {"output": protocol.encode(np.zeros(3))})
    assert wrong.code == "wrong_value" and "expected 1" in wrong.message
    assert protocol.judge(np.ones(3), {"output": protocol.encode(np.ones(2))}).code == \
        "wrong_shape"
    assert protocol.judge(1.0, {"output": {"__float__": "nan"}}).code == "non_finite"
    assert protocol.judge(1.0, {"code": "timeout", "error": "x"}).code == "timeout"
    assert protocol.judge(1.0, {"code": "made-up", "error": "x"}).code == "no_answer"
    assert protocol.judge(1.0, "junk").code == "no_answer"
    secret = protocol.judge(5.0, {"code": "raised", "error": "ValueError: inputs 7, 8"},
                            public=False)
    assert secret == protocol.Outcome("raised", "")
    assert set(protocol.REASONS) >= {"passed", "wrong_value", "not_differentiable"}


def _torch_spec(differentiable=True):
    return {"id": "t", "function": "f", "torch": True, "driver": None,
            "differentiable": differentiable}


@pytest.mark.parametrize("body, code, words", [
    (lambda x: (x ** 2).sum(), "passed", ""),
    (lambda x: (x ** 2).sum().item(), "not_differentiable", ".item()"),
    (lambda x: (x ** 2).sum().detach(), "not_differentiable", ".detach()"),
    (lambda x: (x ** 2).sum().detach().numpy(), "not_differentiable", "numpy"),
    (lambda x: torch_leaf((x ** 2).sum().item()), "not_differentiable", "not from the inputs"),
])
def test_a_differentiable_task_needs_a_graph_back_to_the_inputs(body, code, words):
    case = {"args": protocol.encode((np.array([1.0, 2.0]),)), "kwargs": {}}
    record = protocol.call_case(body, _torch_spec(), case)
    outcome = protocol.judge(5.0, record)
    assert outcome.code == code, record
    assert words in outcome.message
    plain = protocol.call_case(lambda x: (x ** 2).sum().item(), _torch_spec(False), case)
    assert protocol.judge(5.0, plain).passed  # without differentiable=True, a float is fine


def torch_leaf(value):
    import torch

    return torch.tensor(value, requires_grad=True)


def test_points_per_check_within_a_task():
    task = tasks.Task("t", function="f", points=3, hint="mind the edges",
                      cases=[tasks.case(1, public=True), tasks.case(2), tasks.case(3),
                             tasks.case(4)])
    results = [{"case": 1, "public": True, "passed": True, "code": "passed"},
               {"case": 2, "public": False, "passed": True, "code": "passed"},
               {"case": 3, "public": False, "passed": False, "code": "wrong_value"},
               {"case": 4, "public": False, "passed": True, "code": "passed"}]
    entry = grade._check_entry(task, results)
    assert entry["points"] == 2.25 and not entry["passed"] and entry["cases_passed"] == 3
    assert "check 3 (hidden) failed" in entry["feedback"] and "mind the edges" in entry["feedback"]
    third = grade._check_entry(tasks.Task("u", function="f", points=1, cases=[
        tasks.case(1, public=True), tasks.case(2), tasks.case(3)]), results[:3])
    assert third["points"] == 0.67


def test_a_failing_public_check_shows_the_call(capsys):
    assert tasks.check("bleu_brevity", lambda c, r: 1.0) is False
    out = capsys.readouterr().out
    assert "brevity_penalty(" in out and "failed" in out


def test_exercise_notebooks_read_clean_in_jupyterlab():
    import re

    for name in NAMES:
        text = (ROOT / "exercises" / f"{name}.ipynb").read_text(encoding="utf-8")
        cells = json.loads(text)["cells"]
        markdown = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
        assert not re.search(r"\{[a-z:]+\}`", markdown), name
    assert assign.plain_markdown("{cite:t}`a,b`", {"a": ("A", "1"), "b": ("B and C", "2")}) \
        == "A (1); B and C (2)"


def test_submission_ids_are_distinct_and_stable(tmp_path):
    paths = [tmp_path / "alice" / "hw.ipynb", tmp_path / "bob" / "hw.ipynb",
             tmp_path / "carol.ipynb"]
    assert grade.submission_ids(paths) == ["alice__hw", "bob__hw", "carol"]
    earlier = {str(paths[0].resolve()): "alice__hw"}
    assert grade.submission_ids([paths[0]], earlier) == ["alice__hw"]  # graded again: replaced
    other = tmp_path / "dan" / "carol.ipynb"
    assert grade.submission_ids([other], {str(paths[2]): "carol"}) == ["dan__carol"]


def test_similarity_sees_through_renaming_and_ignores_the_template():
    template = {"def f(x):", "# YOUR CODE HERE"}
    a = similarity.fingerprints(["def f(x):\n    total = 0\n    for i in range(x):\n"
                                 "        total += i * i\n    return total"], template)
    b = similarity.fingerprints(["def f(x):\n    s = 0\n    for j in range(x):\n"
                                 "        s += j * j\n    return s"], template)
    c = similarity.fingerprints(["def f(x):\n    return sum(k ** 2 for k in range(x))"],
                                template)
    reports = [{"exercise": "e", "submission": n, "fingerprints": p}
               for n, p in (("a", a), ("b", b), ("c", c))]
    pairs = similarity.similar_pairs(reports, threshold=0.0)
    assert pairs[0][1:4] == ("a", "b", 1.0)
    assert all(p[3] < 1.0 for p in pairs[1:])


# --------------------------------------------------- feedback in the student's terms (issue 27)

def _gp_arguments(batch=13):
    rng = np.random.default_rng(0)
    return dict(w1=rng.normal(size=(4, 2)), b1=np.zeros(4), w2=rng.normal(size=(1, 4)),
                b2=np.zeros(1), real=rng.normal(size=(batch, 2)),
                fake=rng.normal(size=(batch, 2)), eps=rng.random((batch, 1)), lam=10.0)


def test_a_driver_case_shows_the_call_the_student_function_received():
    call = protocol.describe_case("critic_loss", "wgan_gp", (), _gp_arguments())
    assert call.startswith("critic_loss(critic=Sequential(Linear(2, 4), Tanh(), Linear(4, 1))")
    assert "real=tensor(shape=(13, 2), dtype=float32" in call and "lam=10.0" in call
    assert "w1=" not in call and "b2=" not in call  # the driver's arguments stay hidden
    # a training task: what the student's train function gets, not the driver's numbers
    d = protocol.describe_case("train_discriminator", "discriminator_net",
                               (0.0, 1.0, 0.5, 1.5, 1000, 0), {})
    assert d == ("train_discriminator(real=(1000, 1) float32 tensor drawn from N(0, 1^2), "
                 "fake=(1000, 1) float32 tensor drawn from N(0.5, 1.5^2), seed=0)")
    levels = np.zeros((1000, 1, 8, 8), dtype=np.int64)
    assert protocol.describe_case("train_vae", "vae_nets", (levels, 0), {}) == (
        "train_vae(train_levels=tensor(shape=(1000, 1, 8, 8), dtype=int64, values 0 to 0), "
        "seed=0)")
    assert "half near -2" in protocol.describe_case("train_gan", "generator_net", (2000, 0), {})
    # a task without a driver: its own arguments, big arrays by shape and dtype
    assert protocol.describe_case("fit_mixture", None, (levels, 10, 30, 0), {}) == (
        "fit_mixture(array(shape=(1000, 1, 8, 8), dtype=int64, values 0 to 0), 10, 30, 0)")


def test_a_driver_answer_is_named_after_what_the_student_code_produced():
    from coursekit.grader.drivers import answer_names

    grads = [np.zeros((4, 2)), np.zeros(4), np.zeros((1, 4)), np.zeros(1)]
    wrong = [g.copy() for g in grads]
    wrong[2][0, 1] = 1.0
    names = answer_names("wgan_gp", "critic_loss")
    outcome = protocol.judge({"loss": 1.0, "grads": grads},
                             {"output": protocol.encode({"loss": 1.0, "grads": wrong})},
                             names=names)
    assert outcome.message.startswith(
        "the gradient of critic[2].weight after loss.backward() is wrong at index (0, 1)")
    assert "answer[" not in outcome.message
    loss = protocol.judge({"loss": 1.0, "grads": grads},
                          {"output": protocol.encode({"loss": 2.0, "grads": grads})},
                          names=names)
    assert loss.message.startswith("the loss critic_loss returned is wrong")
    assert answer_names("generator_net", "train_gan") == {}


def test_check_of_a_driver_task_speaks_of_the_students_call(capsys):
    def one_sided(critic, real, fake, eps, lam):
        return critic(fake).mean() - critic(real).mean()  # no penalty at all

    assert tasks.check("wgan_gp", one_sided) is False
    out = capsys.readouterr().out
    assert "critic_loss(critic=Sequential(Linear(" in out and "w1=" not in out
    assert "answer[" not in out and "the gradient of critic[" in out


def test_a_hint_goes_with_the_case_it_belongs_to():
    task = tasks.Task("t", function="f", points=3, hint="mind the edges",
                      cases=[tasks.case(1, public=True), tasks.case(2),
                             tasks.case(3, hint="an empty input returns 0")])
    results = [{"case": 1, "public": True, "passed": True, "code": "passed"},
               {"case": 2, "public": False, "passed": True, "code": "passed"},
               {"case": 3, "public": False, "passed": False, "code": "wrong_value",
                "hint": "an empty input returns 0"}]
    entry = grade._check_entry(task, results)
    assert "check 3 (hidden) failed (hint: an empty input returns 0)" in entry["feedback"]
    assert "mind the edges" not in entry["feedback"]  # not this case's hint
    public_first = [{"case": 1, "public": True, "passed": False, "code": "wrong_value",
                     "call": "f(1)", "message": "the answer is wrong"}, *results[1:]]
    feedback = grade._check_entry(task, public_first)["feedback"]
    assert feedback.endswith("; check 3 (hidden) failed too (hint: an empty input returns 0)")
    report = {"submission": "s.ipynb", "exercise": "01_background", "score": 1, "max_score": 3,
              "errors": [], "checks": [{**grade._check_entry(task, results), "id": "t"}]}
    lines = gradebook.feedback_markdown(report).splitlines()
    at = lines.index("- check 3 (hidden): failed")
    assert lines[at + 1] == "  - hint: an empty input returns 0"
    assert not any(line.startswith("- hint") for line in lines)


def test_the_reference_runs_what_the_exercise_holds():
    """Cells tagged solution-only (the book's comparisons, which may read benchmark results the
    sandbox cannot see) are left out of the exercise, so the reference's run leaves them out."""
    import jupytext

    for name in NAMES:
        notebook = jupytext.read(ROOT / "solutions" / f"{name}.md")
        only = [c.source for c in notebook.cells if c.cell_type == "code"
                and "solution-only" in c.metadata.get("tags", [])]
        cells = load_exercise(name).cells
        assert not set(only) & set(cells), name
        assert len(cells) == sum(c.cell_type == "code" for c in notebook.cells) - len(only) - 1
