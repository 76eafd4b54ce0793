"""``python -m coursekit train`` and ``sample``: a short dry run on real digits writes every file,
resume and sample work, and bad usage exits 2 with one line naming the valid choices."""

import json
import os
import subprocess
import sys

import pytest

from coursekit.__main__ import main

ENV = {**os.environ, "COURSEKIT_OFFLINE": "1", "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "coursekit", *args], capture_output=True,
                          text=True, env=ENV, timeout=300)


def test_train_resume_and_sample_in_process(tmp_path, capsys):
    out = tmp_path / "gan"
    assert main(["train", "gan", "--epochs", "1", "--out", str(out), "--quiet",
                 "--device", "cpu", "--seed", "3", "--ema", "0.9"]) == 0
    assert {p.name for p in out.iterdir()} == {"checkpoint.pt", "metrics.json", "samples.png",
                                              "losses.png"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["seed"] == 3 and metrics["history"]["epochs"] == 1
    assert metrics["data_source"].startswith("scikit-learn load_digits")
    resume = ["train", "gan", "--epochs", "2", "--out", str(out), "--quiet", "--device", "cpu",
              "--seed", "3", "--ema", "0.9", "--resume"]
    capsys.readouterr()
    assert main(resume) == 0
    assert "resumed from epoch 1" in capsys.readouterr().out
    assert json.loads((out / "metrics.json").read_text())["history"]["epochs"] == 2
    assert main(resume) == 0  # again: the run is finished, and it says so
    assert "already trained 2 epochs (--epochs 2): nothing to train" in capsys.readouterr().out
    small, large = tmp_path / "grid.png", tmp_path / "large.png"
    assert main(["sample", str(out), "--n", "16", "--out", str(small)]) == 0
    assert small.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["sample", str(out), "--n", "1000", "--out", str(large)]) == 0
    grid = 32 * (8 + 1)  # 1000 digits: 32 per row, 8 pixels and a 1-pixel gap each
    assert _png_width(large) >= 2 * grid > _png_width(small)  # the figure grows with n
    capsys.readouterr()
    assert main(["train", "gan", "--epochs", "1", "--out", str(out), "--quiet"]) == 2
    assert "exists: pass --resume" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["train", "vea", "--out", "x"], "invalid choice: 'vea' (choose from 'vae', 'conv-vae'"),
    (["train", "vae", "--data", "cifar", "--out", "x"],
     "invalid choice: 'cifar' (choose from 'digits', 'mnist', 'faces')"),
    (["train", "vae", "--out", "x", "--bogus", "3"],
     "unrecognized arguments for 'train': --bogus 3 (see python -m coursekit train --help)"),
    (["assign", "--bogus"], "unrecognized arguments for 'assign': --bogus"),
    (["sample", "run", "--out", "x.png", "--bogus"], "unrecognized arguments for 'sample'"),
    (["train", "vae", "--resume", "--out", "x"], "--resume: there is no checkpoint at x"),
    (["sample", "no/such/run", "--out", "x.png", "--device", "cuda:7"], "not available"),
    (["train", "cgan", "--data", "faces", "--out", "x"], "cgan needs labelled data"),
    (["train", "vae", "--epochs", "0", "--out", "x"], "--epochs must be positive, got 0"),
    (["train", "vae", "--device", "tpu", "--out", "x"], "unknown device 'tpu'"),
    (["sample", "no/such/run", "--out", "x.png"], "no checkpoint at no/such/run"),
])
def test_bad_usage_exits_2_with_one_line(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        status = main(args)
        raise SystemExit(status)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert message in err and err.count("\n") == 1, err


def _png_width(path) -> int:
    return int.from_bytes(path.read_bytes()[16:20], "big")


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.startswith("coursekit ")


def test_corrupt_run_exits_1(tmp_path, capsys):
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    assert main(["sample", str(tmp_path), "--out", str(tmp_path / "x.png")]) == 1
    assert "corrupt or not a coursekit checkpoint" in capsys.readouterr().err


def _help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def test_help_documents_every_option(capsys):
    text = _help("train", capsys)
    for option in ("--data", "--epochs", "--out", "--device", "--seed", "--resume", "--ema",
                   "--batch-size", "--lr", "--beta", "--quiet", "--overwrite", "wgan-gp"):
        assert option in text
    assert all(o in _help("sample", capsys) for o in ("--n", "--out", "--mean", "RUN"))


@pytest.mark.slow
def test_the_command_line_runs_as_a_program(tmp_path):
    result = _cli("train", "vae", "--epochs", "1", "--out", str(tmp_path / "vae"), "--quiet",
                  "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "vae on digits: 1 epochs" in result.stdout


def test_conditional_models_get_ten_classes_even_if_a_split_lacks_some():
    from coursekit.data import digits
    from coursekit.runs import build_model

    part = digits("val")
    keep = part.labels < 5  # a split holding only the digits 0-4
    part.images, part.labels, part.levels = part.images[keep], part.labels[keep], part.levels[keep]
    for name in ("cvae", "cgan"):
        model = build_model(name, part)
        assert model.config.num_classes == 10
