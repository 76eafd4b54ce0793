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
from coursekit.grader import judges, protocol, sandbox, tasks
from coursekit.grader.tasks import ROOT, exercise_names, load_exercise

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


@pytest.mark.parametrize("name", exercise_names())
def test_the_wire_form_is_built_from_the_task(name):
    """The sandbox is told the allow-listed fields only; the committed public file is exactly
    ``Task.to_wire`` of the exercise's tasks with the recorded answers, inputs aside (one schema,
    not two)."""
    public = json.loads((ROOT / "coursekit/grader/public" / f"{name}.json").read_text())
    exercise = load_exercise(name)
    assert [t["id"] for t in public["tasks"]] == [t.id for t in exercise.tasks]
    for task, entry in zip(exercise.tasks, public["tasks"]):
        spec = task.to_wire()
        assert set(spec) == {*tasks.SANDBOX_FIELDS, "cases"}
        assert all(set(c) == {"args", "kwargs", "public"} for c in spec["cases"])
        answers = [protocol.decode(c["expected"]) if "expected" in c else None
                   for c in entry["cases"]]
        wire = json.loads(json.dumps(task.to_wire(answers), sort_keys=True))
        # the inputs themselves are left out: some are built from the running interpreter's
        # own text (exercise 7 reads pydoc's topics), which differs between Python releases
        for case in wire["cases"] + entry["cases"]:
            case.pop("args"), case.pop("kwargs"), case.pop("held_out", None)
        assert wire == entry
        with pytest.raises(ValueError, match="public cases but"):
            task.to_wire(answers + [None])


def reference_training(name: str, task_id: str):
    """The reference solution's training function of ``task_id``, run in this process (the
    solutions are the course's own code), and the task, whose cases hold the judge's inputs."""
    import torch

    task = next(t for t in load_exercise(name).tasks if t.id == task_id)
    namespace = {}
    for cell in classroom.solved_notebook(name)["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] == "code" and not source.startswith("check("):
            exec(source, namespace)

    def train(case):
        from coursekit.grader import drivers

        args = [torch.from_numpy(a.copy()) if isinstance(a, np.ndarray) else a
                for a in case.args]
        function = namespace[task.function]  # through the task's driver, as in the sandbox
        artefact = (getattr(drivers, task.driver)(function, *args, **case.kwargs)
                    if task.driver else function(*args, **case.kwargs))
        return protocol.decode(json.loads(json.dumps(protocol.encode(artefact))))

    return train, task


def test_ar_nll_measures_the_reference_and_masks_what_peeks():
    train, task = reference_training("11_exact_likelihood", "el_train_fvsbn")
    for case in task.cases:  # the reference passes the public and the hidden bar
        W, c = train(case)
        assert judges.ar_nll((W, c), **case.held_out).passed, case.held_out["limit"]
    public = task.cases[0]
    images, limit = public.held_out["images"], public.held_out["limit"]
    # entries on and above the diagonal change nothing: the judge masks them itself
    garbage = np.triu(np.random.default_rng(0).normal(scale=50.0, size=W.shape))
    masked, noisy = judges.ar_nll((W, c), images, limit), judges.ar_nll((W + garbage, c),
                                                                        images, limit)
    assert noisy.passed and noisy.message.startswith(masked.message)
    assert "2080 nonzero entries of W on or above the diagonal" in noisy.message
    # pixel i reading itself: 0 nats if it counted, far above the bar once masked
    peeks = (100.0 * np.eye(64), np.full(64, -50.0))
    logits = peeks[1] + images @ peeks[0].T  # unmasked: x_i decides p(x_i = 1)
    assert (np.logaddexp(0, logits) - images * logits).sum(1).mean() < 1e-15
    assert not judges.ar_nll(peeks, images, limit).passed
    # independent pixels (the best W = 0 model) and a constant one fail
    train_images = public.args[0].astype(float)
    p = (train_images.sum(0) + 0.5) / (len(train_images) + 1.0)
    assert not judges.ar_nll((np.zeros((64, 64)), np.log(p / (1 - p))), images, limit).passed
    assert not judges.ar_nll((np.zeros((64, 64)), np.zeros(64)), images, limit).passed
    for forged in [(W[:, :10], c), (W, c[:10]), (W,), {"W": W, "c": c}, (W * np.nan, c),
                   {"held-out NLL < 22": True}]:
        assert judges.judge_artefact("ar_nll", forged, public.held_out).malformed, forged


def test_codebook_distortion_measures_the_reference_against_random_and_collapsed_codebooks():
    train, task = reference_training("12_discrete_latents", "vq_train_codebook")
    for case in task.cases:
        assert judges.codebook_distortion(train(case), **case.held_out).passed
    public = task.cases[0]
    held_out, patches = public.held_out, public.args[0]
    K = held_out["num_codes"]
    rng = np.random.default_rng(0)
    for _ in range(20):  # K random training patches, where k-means starts
        random_rows = patches[rng.choice(len(patches), K, replace=False)]
        assert not judges.codebook_distortion(random_rows, **held_out).passed
    collapsed = (2 * rng.random((K, 16)) - 1) / K  # Chapter 12's start, uniform in 1/K
    assert not judges.codebook_distortion(collapsed, **{**held_out, "limit": 1e9}).passed
    one_code = np.repeat(patches.mean(0, keepdims=True), K, axis=0)
    assert "codes used = 1 of 32" in judges.codebook_distortion(one_code, **held_out).message
    # usage alone: a codebook that fits but leaves 9 of its 32 codes unused fails
    fits = train(public)
    fits[:9] = 100.0
    assert not judges.codebook_distortion(fits, **{**held_out, "limit": 1e9}).passed
    assert judges.codebook_distortion(fits, **{**held_out, "limit": 1e9,
                                               "min_usage": 23 / 32}).passed
    # the training patches themselves as a "codebook" of 4000 codes: not the asked shape
    for forged in [patches, patches[:K, :8], patches[:K].T, np.full((K, 16), np.inf),
                   "codebook", {"distortion": 0.0}]:
        assert judges.judge_artefact("codebook_distortion", forged, held_out).malformed


def test_held_out_accuracy_measures_the_reference_against_trivial_and_malformed_classifiers():
    # The reference's own training passes this judge in solutions/06_few_labels (its check()
    # and the solution-only cell, both run by nbval) and in a real grade: not trained again here.
    task = next(t for t in load_exercise("06_few_labels").tasks
                if t.id == "fl_train_few_labels")
    public = task.cases[0]
    images, labels = public.held_out["images"], public.held_out["labels"]
    rng = np.random.default_rng(0)  # an MLP of the task's shape, 64-256-256-10
    net = {"layers": [["linear", rng.normal(size=(256, 64)), np.zeros(256)], ["relu"],
                      ["linear", rng.normal(size=(256, 256)), np.zeros(256)], ["relu"],
                      ["linear", rng.normal(size=(10, 256)), np.zeros(10)]]}
    assert not judges.held_out_accuracy(net, **public.held_out).passed  # untrained
    # a constant classifier, and a nearest-mean one from the 100 labelled images, fail
    zero = {"layers": [["linear", np.zeros((10, 64)), np.zeros(10)]]}
    assert "accuracy = 0.1" in judges.held_out_accuracy(zero, **public.held_out).message
    x, y = public.args[0], public.args[1]
    means = np.stack([x[y == k].mean(0) for k in range(10)])  # (10, 64)
    nearest = {"layers": [["linear", 2 * means, -(means ** 2).sum(1)]]}
    assert 0.5 < (judges.forward(nearest, images).argmax(1) == labels).mean() < 0.9
    assert not judges.held_out_accuracy(nearest, **public.held_out).passed
    W, b = net["layers"][-1][1], net["layers"][-1][2]
    for forged in [{"layers": net["layers"][:-1] + [["linear", W[:5], b[:5]]]},  # 5 classes
                   {"layers": [["linear", np.ones((10, 32)), np.zeros(10)]]},  # 32 pixels
                   {"layers": [["linear", np.full((10, 64), np.nan), np.zeros(10)]]},
                   {"layers": [["linear", np.full((10, 64), 1e308), np.zeros(10)], ["linear",
                               np.full((10, 10), 1e308), np.zeros(10)]]},  # logits overflow
                   {"accuracy": 1.0}, "classifier", [W, b]]:
        assert judges.judge_artefact("held_out_accuracy", forged, public.held_out).malformed


def test_char_bits_is_exact_and_measures_the_reference_against_unigram_and_malformed_models():
    train, task = reference_training("07_text", "lm_train_char_model")
    public = task.cases[0]
    held_out = public.held_out
    k, ids = held_out["context"], public.args[0].astype(np.int64)
    V = public.args[1]
    start = time.process_time()
    assert judges.char_bits(train(public), **held_out).passed
    assert time.process_time() - start < 60  # training and judging; judging alone < 2 s
    # exact: a bigram table read through the last one-hot code scores what numpy computes
    counts = np.full((V, V), 0.1)
    np.add.at(counts, (ids[:-1], ids[1:]), 1.0)
    log_p = np.log(counts / counts.sum(1, keepdims=True))  # (prev, next)
    W = np.zeros((V, k * V))
    W[:, (k - 1) * V:] = log_p.T  # logit of next c = log p(c | previous character)
    bigram = {"layers": [["linear", W, np.zeros(V)]]}
    from coursekit.text.tokenize import CharTokenizer
    text = np.array(CharTokenizer(list(held_out["vocabulary"])).encode(held_out["text"]))
    expected = -log_p[text[k - 1:-1], text[k:]].mean() / np.log(2)
    start = time.process_time()
    verdict = judges.char_bits(bigram, **held_out)
    assert time.process_time() - start < 2.0
    assert f"= {expected:.4g} " in verdict.message and not verdict.passed
    # unigram frequencies and uniform logits are far above the bar
    unigram = np.log(np.bincount(ids, minlength=V) + 0.5)
    for weak in (unigram, np.zeros(V)):
        flat = {"layers": [["linear", np.zeros((V, k * V)), weak]]}
        assert not judges.char_bits(flat, **held_out).passed
    for forged in [{"layers": [["linear", W[:50], np.zeros(50)]]},  # 50 of the 104 ids
                   {"layers": [["linear", W[:, :V], np.zeros(V)]]},  # reads one character
                   {"layers": [["linear", np.full_like(W, np.inf), np.zeros(V)]]},
                   {"bits per character": 0.0}, (W, np.zeros(V))]:
        assert judges.judge_artefact("char_bits", forged, held_out).malformed


def test_inpainting_psnr_is_exact_and_measures_the_reference_against_baselines_and_forgeries():
    train, task = reference_training("08_applications", "app_fit_mixture")
    for case in task.cases:  # the reference passes the public (val) and hidden (test) bar
        assert judges.inpainting_psnr(train(case), **case.held_out).passed
    public = task.cases[0]
    held_out, images, mask = public.held_out, public.held_out["images"], public.held_out["mask"]
    log_weights, means, factors, noise = train(public)
    # exact: one Gaussian's conditional mean, by the textbook formula with an explicit inverse
    x, rng = public.args[0], np.random.default_rng(0)
    mu, W = x.mean(0), rng.normal(scale=0.1, size=(64, 5))
    cov = W @ W.T + 0.02 * np.eye(64)
    o, m = ~mask, mask
    fill = mu[m] + (images[:, o] - mu[o]) @ np.linalg.inv(cov[np.ix_(o, o)]) @ cov[np.ix_(o, m)]
    expected = (10 * np.log10(1 / ((fill - images[:, m]) ** 2).mean(1))).mean()
    one = judges.inpainting_psnr((np.zeros(1), mu[None], W[None], np.array([0.02])), images,
                                 mask, 1, 5, 99.0)
    assert f"= {expected:.2f} dB" in one.message and not one.passed
    # the components' posterior weights: log-probabilities of ~ -1e4 nats do not overflow
    far = (np.log([0.5, 0.5]), np.stack([images[0], 100 + images[0]]), np.zeros((2, 64, 1)),
           np.full(2, 1e-4))
    assert "= 100.00 dB" in judges.inpainting_psnr(far, images[:1], mask, 2, 1, 30.0).message
    # baselines below the bar: the per-pixel mean, the class means alone, PCA without noise
    for weak in [(np.zeros(1), mu[None], np.zeros((1, 64, 5)), x.var(0)[None] + 1e-3),
                 (log_weights, means, np.zeros_like(factors), np.full(10, 0.05)),
                 (log_weights, means, factors, np.full(10, 1e-6))]:
        C = len(weak[0])
        assert not judges.inpainting_psnr(weak, **{**held_out, "num_components": C}).passed
    unnormalised = (log_weights + 1.0, means, factors, noise)
    huge = np.zeros((10, 64, 10_000))  # more numbers than a grader evaluates
    for forged in [unnormalised, (log_weights, means, factors, -noise),  # not positive definite
                   (log_weights, means, factors, np.zeros(10)), (log_weights, means, factors),
                   (log_weights, means[:, :32], factors, noise), (log_weights, means,
                                                                 factors[..., :3], noise),
                   (log_weights, means * np.nan, factors, noise), (log_weights, means, huge,
                                                                   noise),
                   (log_weights, means, factors * 1e200, noise),  # the covariance overflows
                   (log_weights, means, factors, 0.01), {"psnr": 99.0}, "mixture",
                   (log_weights, means, factors, [["a"]])]:
        verdict = judges.judge_artefact("inpainting_psnr", forged, held_out)
        assert verdict.malformed and not verdict.passed, verdict


def test_ddim_mmd_samples_the_reference_and_fails_baselines_and_forged_denoisers():
    train, task = reference_training("09_diffusion", "diff_train_denoiser")
    public = task.cases[0]
    held_out = public.held_out
    for case in task.cases:  # the reference passes the public and the hidden bar
        start = time.process_time()
        net = train(case)
        assert time.process_time() - start < 30  # the brief's budget: about 20 CPU-s
        verdict = judges.ddim_mmd(net, **case.held_out)
        assert verdict.passed and "MMD^2 of 2000 DDIM samples" in verdict.message
    start = time.process_time()
    judges.ddim_mmd(net, **held_out)
    assert time.process_time() - start < 5.0
    # networks that must fail: no noise predicted (DDIM only rescales x_T), and untrained
    rng = np.random.default_rng(0)
    zero = {"layers": [["linear", np.zeros((2, 3)), np.zeros(2)]]}
    untrained = {"layers": [["linear", rng.normal(size=(128, 3)) / 3 ** 0.5, np.zeros(128)],
                            ["relu"], ["linear", rng.normal(size=(2, 128)) / 128 ** 0.5,
                                       np.zeros(2)]]}
    for weak in (zero, untrained):
        assert not judges.ddim_mmd(weak, **held_out).passed
    # samples that must fail the same distance: one blob, every blob's centre (sharper than the
    # data), a ring through the blobs (smeared), and the Gaussian fitted to the training data
    means, std, limit = held_out["means"], held_out["std"], held_out["limit"]
    n = 2000
    data = means[rng.integers(8, size=n)] + std * rng.standard_normal((n, 2))
    angle = rng.uniform(0, 2 * np.pi, n)
    train_points = public.args[0].astype(np.float64)
    baselines = {"one blob": means[0] + std * rng.standard_normal((n, 2)),
                 "centres": means[rng.integers(8, size=n)],
                 "ring": 2.0 * np.stack([np.cos(angle), np.sin(angle)], 1)
                 + std * rng.standard_normal((n, 2)),
                 "Gaussian fit": rng.multivariate_normal(train_points.mean(0),
                                                         np.cov(train_points.T), n)}
    fresh = means[rng.integers(8, size=n)] + std * rng.standard_normal((n, 2))
    assert judges._mmd(fresh, data, 0.2) < limit / 4  # the data itself passes easily
    for name, samples in baselines.items():
        assert judges._mmd(samples, data, 0.2) > 1.5 * limit, name
    W1, b1 = net["layers"][0][1], net["layers"][0][2]
    wide = {"layers": [["linear", np.ones((400, 3)), np.zeros(400)], ["relu"],
                       ["linear", np.ones((200, 400)), np.zeros(200)], ["relu"],
                       ["linear", np.ones((2, 200)), np.zeros(2)]]}  # 81,800 parameters
    for forged in [{"layers": [["linear", W1 * np.nan, b1]] + net["layers"][1:]},
                   {"layers": [["linear", np.full((2, 3), 1e308), np.zeros(2)], ["linear",
                               np.full((2, 2), 1e308), np.zeros(2)]]},  # noise overflows
                   {"layers": [["linear", np.ones((2, 2)), np.zeros(2)]]},  # reads x_t only
                   {"layers": [["linear", np.ones((3, 3)), np.zeros(3)]]},  # 3 outputs
                   wide, {"MMD^2": 0.0}, "denoiser", [W1, b1]]:
        verdict = judges.judge_artefact("ddim_mmd", forged, held_out)
        assert verdict.malformed and not verdict.passed, forged


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
    # the autograded points: the written answer scores 0 until the instructor marks it
    return {p.stem: grader.grade(p) for p in paths}, sum(t.points for t in exercise.tasks)


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


# ------------------------------------------- 2, 3, 5: a tiny exercise graded by the command

TINY = '''---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

# Exercise 1: tiny

```{code-cell} ipython3
def double(x):
    """Twice ``x``."""
    ### BEGIN SOLUTION
    return 2 * x
    ### END SOLUTION
```

```{code-cell} ipython3
:tags: [grading]

from coursekit.grader.tasks import Task, case

TASKS = [Task("double", function="double", points=2,
              cases=[case(1.5, public=True), case(-4.0), case(10.0)])]
```
'''


def tiny_notebook(body: str = "return 2 * x", exercise: str = "01_tiny") -> dict:
    source = f"def double(x):\n" + "\n".join("    " + line for line in body.splitlines())
    return {"cells": [{"cell_type": "code", "metadata": {}, "source": source, "outputs": [],
                       "execution_count": None}],
            "metadata": {"coursekit": {"exercise": exercise}}, "nbformat": 4,
            "nbformat_minor": 5}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny exercise, a key, and a class of honest and hostile submissions of it."""
    base = tmp_path_factory.mktemp("tiny")
    solutions = base / "solutions"
    solutions.mkdir()
    (solutions / "01_tiny.md").write_text(TINY)
    key = base / "key"
    key.write_bytes(os.urandom(32).hex().encode())
    inbox = base / "in"
    inbox.mkdir()
    for name, body in [("alice", "return 2 * x"), ("bob", "return 3 * x"),
                       ("carol", "raise ValueError('<img src=http://evil/x.png> [link](http://e)"
                                 " ```\\n# forged heading')")]:
        (inbox / f"{name}.ipynb").write_text(json.dumps(tiny_notebook(body)))
    # a link to another student's file (or to the course's solution) is not that file
    (inbox / "mallory.ipynb").symlink_to(inbox / "alice.ipynb")
    os.mkfifo(inbox / "fifo.ipynb")
    (inbox / "folder.ipynb").mkdir()
    (inbox / "old.ipynb").write_text(json.dumps({"nbformat": 3, "worksheets": [
        {"cells": [{"cell_type": "code", "input": "def double(x):\n    return 2 * x"}]}],
        "metadata": {"coursekit": {"exercise": "01_tiny"}}}))
    (inbox / b"bad-\xff-name.ipynb".decode("utf-8", "surrogateescape")).write_text(
        json.dumps(tiny_notebook()))
    (inbox / "x\n\x1b[2Jforged.ipynb").write_text(json.dumps(tiny_notebook()))
    roster = base / "roster.csv"
    roster.write_text("file,student,name,email\nalice.ipynb,s1,=HYPERLINK(\"http://e\"),"
                      "a@x\nbob.ipynb,s2,+cmd,@SUM(1)\ncarol.ipynb,s3,Carol,c@x\n")
    out = base / "out"
    done = grade_cli(inbox, "--out", out, "--solutions", solutions, "--roster", roster,
                     "--timeout", "30", "--quiet", key=key)
    return {"base": base, "solutions": solutions, "key": key, "inbox": inbox, "out": out,
            "done": done, "roster": roster}


def tiny_reports(out: Path) -> dict:
    return {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")
            if p.name != "shard.json"}


@needs_sandbox
def test_links_fifos_folders_and_old_notebooks_are_reported_not_graded(tiny):
    assert tiny["done"].returncode == 0, tiny["done"].stderr[-2000:]
    got = tiny_reports(tiny["out"])
    assert got["alice"]["score"] == 2 and got["bob"]["score"] == 0
    assert got["mallory"]["score"] == 0 and "symbolic link" in got["mallory"]["not_graded"]
    assert got["mallory"]["file"].endswith("/mallory.ipynb")  # the path as given
    assert "FIFO" in got["fifo"]["not_graded"] and "folder" in got["folder"]["not_graded"]
    assert "nbformat 3" in got["old"]["not_graded"]


@needs_sandbox
def test_hostile_file_names_neither_crash_nor_forge_lines(tiny):
    done, got = tiny["done"], tiny_reports(tiny["out"])
    escaped = next(r for r in got.values() if "\\xff" in r["file"])
    assert escaped["score"] == 2
    assert "\x1b" not in done.stderr and "\nforged" not in done.stderr
    assert (tiny["out"] / "grades.csv").read_text().count("\n") == len(got) + 1


@needs_sandbox
def test_csv_cells_are_never_formulas_and_feedback_is_fenced(tiny):
    out = tiny["out"]
    for name in ("canvas.csv", "moodle.csv", "grades.csv"):
        for row in csv.reader(open(out / name, encoding="utf-8")):
            assert not any(cell[:1] in ("=", "+", "-", "@", "\t", "\r") for cell in row), row
    canvas = (out / "canvas.csv").read_text()
    assert "'=HYPERLINK" in canvas and "'+cmd" in canvas
    feedback = (out / "feedback" / "carol.md").read_text()
    fenced = feedback.split("````text")[1] if "````text" in feedback else ""
    assert "<img src=http://evil/x.png>" in fenced  # inside a fence longer than the student's
    assert "\n# forged heading" not in feedback.replace(fenced, "")
    assert "&lt;img" in (out / "moodle.csv").read_text()


@needs_sandbox
def test_a_tampered_report_is_refused_by_merge(tiny, tmp_path):
    import shutil

    for change in ("score", "escape", "hmac"):
        shard = tmp_path / change
        shutil.copytree(tiny["out"], shard)
        report = json.loads((shard / "alice.json").read_text())
        if change == "score":
            report["score"] = 999
        elif change == "escape":
            report["submission"] = "../../../x"
        else:  # consistent numbers, but not what the grader signed
            report["score"], report["checks"][0]["points"] = 2, 2
            (shard / "bob.json").write_text(json.dumps(
                dict(json.loads((shard / "bob.json").read_text()), score=2, checks=[
                    dict(report["checks"][0])])))
            continue
        (shard / "alice.json").write_text(json.dumps(report))
    for change in ("score", "escape", "hmac"):
        done = grade_cli("merge", tmp_path / change, "--out", tmp_path / f"m-{change}",
                         key=tiny["key"])
        assert done.returncode == 2 and "refused" in done.stderr, (change, done.stderr)
        assert not (tmp_path / f"m-{change}").exists()
    assert not (tmp_path.parent / "x.json").exists()


@needs_sandbox
def test_shards_by_position_markers_and_mismatches(tiny, tmp_path):
    inbox = tmp_path / "class"
    inbox.mkdir()
    for name in ("a", "b", "c", "d"):
        (inbox / f"{name}.ipynb").write_text(json.dumps(tiny_notebook()))
    common = ["--solutions", tiny["solutions"], "--timeout", "30", "--quiet"]
    for k in (1, 2):
        done = grade_cli(inbox, "--out", tmp_path / f"s{k}", "--shard", f"{k}/2", *common,
                         key=tiny["key"])
        assert done.returncode == 0, done.stderr[-1500:]
        assert len(tiny_reports(tmp_path / f"s{k}")) == 2  # by position: 2 and 2 of 4
    # an empty share writes its marker, and merge accepts it
    one = tmp_path / "one"
    one.mkdir()
    (one / "a.ipynb").write_text(json.dumps(tiny_notebook()))
    for k in (1, 2):
        done = grade_cli(one, "--out", tmp_path / f"e{k}", "--shard", f"{k}/2", *common,
                         key=tiny["key"])
        assert done.returncode == 0, done.stderr[-1500:]
    done = grade_cli("merge", tmp_path / "e1", tmp_path / "e2", "--out", tmp_path / "em",
                     key=tiny["key"])
    assert done.returncode == 0, done.stderr
    assert len(tiny_reports(tmp_path / "em")) == 1
    # missing, duplicate and mismatched shards are refused
    two = tmp_path / "two"
    two.mkdir()
    for name in ("0", "a"):  # "a" is second here: shard 2/2 grades it again
        (two / f"{name}.ipynb").write_text(json.dumps(tiny_notebook()))
    done = grade_cli(two, "--out", tmp_path / "t2", "--shard", "2/2", *common, key=tiny["key"])
    assert done.returncode == 0, done.stderr[-1500:]
    for folders, words in [((tmp_path / "s1",), "missing"),
                           ((tmp_path / "s1", tmp_path / "s1"), "given twice"),
                           ((tmp_path / "s1", tmp_path / "t2"), "two shards")]:
        done = grade_cli("merge", *folders, "--out", tmp_path / "m", key=tiny["key"])
        assert done.returncode == 2 and words in done.stderr, (words, done.stderr)
    other = tmp_path / "other-solutions"
    other.mkdir()
    (other / "01_tiny.md").write_text(TINY.replace("points=2", "points=3"))
    done = grade_cli(inbox, "--out", tmp_path / "o2", "--shard", "2/2", "--solutions", other,
                     "--timeout", "30", "--quiet", key=tiny["key"])
    assert done.returncode == 0, done.stderr[-1500:]
    done = grade_cli("merge", tmp_path / "s1", tmp_path / "o2", "--out", tmp_path / "m",
                     key=tiny["key"])
    assert done.returncode == 2 and "different solutions" in done.stderr, done.stderr
    done = grade_cli("merge", tmp_path / "s1", tmp_path / "s2", "--out", tmp_path / "m",
                     key=tiny["key"])
    assert done.returncode == 0 and len(tiny_reports(tmp_path / "m")) == 4, done.stderr


@needs_sandbox
def test_a_second_report_of_a_student_is_kept_and_flagged(tiny, tmp_path):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(tiny["out"], out)
    again = tmp_path / "later" / "alice-again.ipynb"
    again.parent.mkdir()
    again.write_text(json.dumps(tiny_notebook("return 5 * x")))
    roster = tmp_path / "roster.csv"
    roster.write_text(tiny["roster"].read_text() + "alice-again.ipynb,s1,A,a@x\n")
    done = grade_cli(again, "--out", out, "--solutions", tiny["solutions"], "--roster", roster,
                     "--timeout", "30", "--quiet", key=tiny["key"])
    assert done.returncode == 0, done.stderr[-1500:]
    assert "s1 has 2 reports of 01_tiny" in done.stderr
    rows = {r["SIS User ID"]: r for r in csv.DictReader(open(out / "canvas.csv"))}
    assert rows["s1"]["01_tiny"] == ""  # neither 2 nor 0 silently: see conflicts.csv
    assert "alice-again" in (out / "conflicts.csv").read_text()
    assert tiny_reports(out)["alice"]["score"] == 2  # the earlier report is kept


# ------------------------------------------------- 6, 7, 8: inside the sandbox, one run

def spec(function: str, *cases, public: int = 0) -> dict:
    return {"id": function, "function": function, "torch": False, "driver": None,
            "differentiable": False,
            "cases": [{"args": protocol.encode(tuple(c)), "kwargs": {}, "public": k < public}
                      for k, c in enumerate(cases)]}


@needs_sandbox
def test_the_root_is_read_only_and_dangerous_system_calls_fail():
    cell = ("import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
            "calls = [libc.unshare(0x10000000), libc.syscall(29, 0, 1 << 30, 0o1000),\n"
            "         libc.syscall(101, 16, os.getppid(), 0, 0), libc.syscall(319, b'x', 0)]\n"
            "try:\n    open('/hog', 'wb').write(b'x' * 4096)\n    root = 'written'\n"
            "except OSError as error:\n    root = error.strerror\n"
            "def f():\n    return {'calls': calls, 'root': root}")
    result = sandbox.run_notebook([cell], [spec("f", ())], sandbox.Limits(timeout=30))
    got = protocol.decode(result.answers[(0, 0)]["output"])
    assert got["root"] == "Read-only file system"
    if sandbox.seccomp_works() or os.environ.get("CI"):
        assert got["calls"] == [-1, -1, -1, -1], got  # namespaces, SysV shm, ptrace, memfd


def test_short_lived_children_count_against_the_cpu_budget():
    """The user mode's watchdog: children that spin less than a poll and are reaped still
    count (their parent's cutime)."""
    spinner = ("import os, time\nfor _ in range(400):\n    pid = os.fork()\n    if pid == 0:\n"
               "        end = time.process_time() + 0.05\n"
               "        while time.process_time() < end:\n            pass\n"
               "        os._exit(0)\n    os.waitpid(pid, 0)\n")
    process = subprocess.Popen([sys.executable, "-c", spinner])
    watchdog = sandbox._Watchdog(process.pid, sandbox.Limits(timeout=1.0))
    watchdog.cpu_budget = 1.0
    watchdog.start()
    process.wait(timeout=60)
    watchdog.stop.set()
    watchdog.join()
    assert watchdog.cpu_exceeded, watchdog.cpu_used
    assert process.returncode == -9  # stopped, not finished (400 x 0.05 s = 20 s of CPU)


def test_a_farm_of_processes_over_the_memory_limit_stops_the_whole_run():
    """The user mode's watchdog kills the largest process past the memory limit, as a cgroup
    does; a run that replaces each killed process and stays over is stopped whole."""
    farm = ("import os, time\nwhile True:\n    if os.fork() == 0:\n"
            "        hog = bytearray(40 << 20)\n"
            "        for i in range(0, len(hog), 4096):\n            hog[i] = 1\n"
            "        time.sleep(30)\n        os._exit(0)\n    time.sleep(0.05)\n")
    process = subprocess.Popen([sys.executable, "-c", farm], start_new_session=True)
    watchdog = sandbox._Watchdog(process.pid, sandbox.Limits(memory_mb=100))
    watchdog.start()
    try:
        process.wait(timeout=60)
    finally:
        watchdog.stop.set()
        watchdog.join()
        try:
            os.killpg(process.pid, 9)  # the hogs the watchdog left (it kills the run's root)
        except OSError:
            pass
    assert watchdog.memory_stopped and watchdog.memory_kills >= sandbox.MEMORY_KILLS
    assert process.returncode == -9


@needs_sandbox
def test_public_feedback_never_holds_hidden_inputs():
    cell = ("import gc\ndef f(x):\n    found = [o for o in gc.get_objects()\n"
            "             if isinstance(o, dict) and 'cases' in o]\n"
            "    raise ValueError('LEAK ' + repr(found))")
    result = sandbox.run_notebook([cell], [spec("f", (1,), (987654321,), public=1)],
                                  sandbox.Limits(timeout=30))
    public_error = result.answers[(0, 0)]["error"]
    assert "LEAK" in public_error and "987654321" not in public_error


@needs_sandbox
def test_a_runner_killed_during_the_calls_is_not_run_again():
    cells = ["import os\ndef f(x):\n    if x == 2:\n        os.kill(os.getppid(), 9)\n"
             "    return x", "y = 1", "z = 2"]
    result = sandbox.run_notebook(cells, [spec("f", (1,), (2,), (3,), public=1)],
                                  sandbox.Limits(timeout=30))
    assert result.answers[(0, 0)] == {"output": 1}
    assert "output" not in result.answers[(0, 2)]
    assert any("ended from inside" in p for p in result.problems), result.problems
    assert result.wall_seconds < 25 and not result.timed_out


# ------------------------------------------------------------------ 8. similarity and flags

def test_similarity_survives_junk_cells_and_padding():
    from coursekit.grader.similarity import fingerprints, flags

    code = "def f(x):\n    y = x * 2 + 1\n    z = y * y - 4\n    return y - 3 + z"
    padded = "\n".join(line + "; pass" if line.strip() else line for line in code.splitlines())
    clean = fingerprints([code], set())
    assert len(clean) >= 5
    junk = set(fingerprints(["'''never closed", code], set()))
    assert len(junk & set(clean)) / len(junk | set(clean)) > 0.5  # was: no fingerprints
    assert fingerprints([padded], set()) == clean
    found = flags(["import base64\nexec(base64.b64decode('eD0x'))"], [])
    assert any("too little" in f for f in found) and any("exec" in f for f in found)
    found = flags(["from coursekit.grader import check\nfrom coursekit.losses import kl",
                   "import coursekit.metrics as m"], clean)
    assert found == ["imports coursekit.losses, coursekit.metrics (the course package holds "
                     "reference code)"]
    assert flags(["from coursekit.data import digits"], clean,
                 template={"from coursekit.data import digits"}) == []


# ------------------------------------------------------ 9. the benchmark's expected scores

@needs_sandbox
@pytest.mark.slow
def test_the_class_fixture_follows_the_uses_rule():
    """A small ``benchmarks/grade_batch.py``: partial and wrong notebooks of the exercises whose
    tasks call other graded functions score what the fixture expects."""
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "grade_batch.py"),
                           "--small", "--jobs", "2", "--timeout", "90"],
                          capture_output=True, text=True, env=ENV, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    import re

    right = re.search(r"expected scores: (\d+) of (\d+) right", done.stdout)
    assert right and right.group(1) == right.group(2) and int(right.group(2)) >= 8, \
        done.stdout[-2000:]
