"""The attacks of issue 21, each reproduced: forged training verdicts, symlinked submissions,
tampered shards, hostile names and cells, leaks (exercises part).

Fast tests need no sandbox; the ones that grade notebooks share two small batches (module
fixtures) and are skipped where no sandbox can be built (failed under CI)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import classroom
from coursekit.grader import judges, protocol, sandbox
from coursekit.grader.tasks import ROOT, load_exercise

NO_SANDBOX = sandbox.mode() == "none" and os.environ.get("CI", "") not in ("1", "true")
needs_sandbox = pytest.mark.skipif(NO_SANDBOX, reason="no sandbox can be built here: "
                                   + sandbox.isolation())
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "COURSEKIT_OFFLINE": "1"}


def grade_cli(*args, key: Path | None = None):
    env = dict(ENV, **({"COURSEKIT_GRADER_KEY_FILE": str(key)} if key else {}))
    return subprocess.run([sys.executable, "-m", "coursekit", "grade", *map(str, args)],
                          capture_output=True, text=True, env=env, cwd=ROOT)


# ------------------------------------------------------------- 1. forged training verdicts

VERDICT = {"weights and tables sum to 1": True, "test NLL (nats per image) < 103": True}


def test_a_forged_verdict_is_not_an_artefact():
    """What the old drivers returned (all True) is refused: only the artefact is judged."""
    outcome = protocol.judge_artefact("mixture_nll", {"levels": np.zeros((3, 4), int),
                                                      "num_components": 2, "limit": 1e9},
                                      {"output": protocol.encode(VERDICT)})
    assert not outcome.passed and outcome.code == "wrong_shape"


def test_judges_measure_the_artefact_on_held_out_data():
    levels = np.random.default_rng(0).integers(0, 4, size=(50, 3))
    uniform = (np.log(np.full(2, 0.5)), np.log(np.full((2, 3, 4), 0.25)))
    assert judges.mixture_nll(uniform, levels, 2, 4.2).passed  # 3 log 4 = 4.159 nats
    assert not judges.mixture_nll(uniform, levels, 2, 4.1).passed
    unnormalised = (np.zeros(2), np.zeros((2, 3, 4)))  # all-zero log tables: "NLL 0"
    assert not judges.judge_artefact("mixture_nll", unnormalised,
                                     {"levels": levels, "num_components": 2,
                                      "limit": 4.2}).passed
    net = {"layers": [["linear", np.ones((3, 2)), np.zeros(3)], ["tanh"],
                      ["linear", np.ones((1, 3)), np.zeros(1)]]}
    assert judges.forward(net, np.zeros((5, 2))).shape == (5, 1)
    for forged in [{"layers": [["linear", np.ones((3, 2)), np.zeros(2)]]},
                   {"layers": [["eval", "os.system('x')"]]}, {"layers": []},
                   {"layers": [["linear", np.ones((2, 2)), np.zeros(2)]] * 40}]:
        assert judges.judge_artefact("generator_w1", forged, {"seed": 0, "limit": 9}).malformed


def test_held_out_inputs_never_reach_the_sandbox():
    exercise = load_exercise("01_background")
    task = next(t for t in exercise.tasks if t.id == "fit_mixture")
    spec = json.dumps(protocol.task_spec(task))
    for c in task.cases:
        held = protocol.encode(c.held_out["levels"])["__ndarray__"]
        assert held not in spec
    assert "held_out" not in spec and "limit" not in spec


FORGE_CHANNEL = """import json, os
record = {answer}
for fd in range(3, 40):
    try:
        os.write(fd, (json.dumps(record) + "\\n").encode())
    except OSError:
        pass
os._exit(0)"""


@pytest.fixture(scope="module")
def forged_training(tmp_path_factory):
    """01_background notebooks that forge the training task's verdict three ways."""
    from coursekit.grader.grade import Grader
    from coursekit.grader.sandbox import Limits

    exercise = load_exercise("01_background")
    index = next(i for i, t in enumerate(exercise.tasks) if t.id == "fit_mixture")
    forged_record = {"output": protocol.encode(VERDICT)}
    bodies = {
        "returns-verdict": f"return {VERDICT!r}",
        "channel": "\n".join(FORGE_CHANNEL.format(answer=repr(
            {"answer": [index, k], "record": forged_record})) for k in (0, 1)),
        "patch-judges": "import coursekit.grader.judges as j, coursekit.grader.protocol as p\n"
                        "j.mixture_nll = lambda *a, **k: j.Verdict(True, 'forged')\n"
                        "p.judge_artefact = lambda *a, **k: p.Outcome('passed')\n"
                        "return np.zeros(10), np.zeros((10, 64, 17))",
    }
    subs = [classroom.Submission(name, classroom.replace_body(
        classroom.solved_notebook("01_background"), "fit_mixture", body), 0, "01_background")
        for name, body in bodies.items()]
    subs.append(classroom.Submission("honest", classroom.solved_notebook("01_background"), 0,
                                     "01_background"))
    paths = classroom.write(subs, tmp_path_factory.mktemp("forged"))
    grader = Grader(Limits(timeout=90))
    return {p.stem: grader.grade(p) for p in paths}, exercise.max_score


@needs_sandbox
@pytest.mark.parametrize("name", ["returns-verdict", "channel", "patch-judges"])
def test_a_training_task_cannot_be_forged(forged_training, name):
    reports, max_score = forged_training
    check = next(c for c in reports[name]["checks"] if c["id"] == "fit_mixture")
    assert check["points"] == 0 and not check["passed"], check
    assert reports["honest"]["score"] == max_score


# ------------------------------------------------------------------ 4. the quadratic pre-check

def test_a_pathological_line_parses_in_linear_time():
    line = b'"' + b'\\"' * 70_000  # the old regular expression backtracked on this: minutes
    started = time.process_time()
    with pytest.raises(protocol.HostileData):
        protocol.loads(line)
    with pytest.raises(protocol.HostileData, match="nested"):
        protocol.loads(b"[" * 100_000 + b"]" * 100_000)
    assert protocol.loads(b'{"a": [[["x"]]]}') == {"a": [[["x"]]]}
    assert time.process_time() - started < 2.0
