"""Two CPU processes under ``torchrun`` (gloo, loopback only) train to the weights of one process
with the same global batch, and the command line trains and resumes under torchrun, with only
rank 0 writing the run's files."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from coursekit.train import TrainConfig, fit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": ROOT, "COURSEKIT_OFFLINE": "1", "MPLBACKEND": "Agg",
       "OMP_NUM_THREADS": "1"}

# A deterministic model that speaks the engine's protocol: the gradients of a mean loss over a
# global batch of 2B equal the average of the gradients of two batches of B.
MODEL = textwrap.dedent('''
    import torch
    from torch import nn

    class Regressor(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 1))

        def phases(self, step):
            return ("fit",)

        def parameter_groups(self):
            return {"fit": list(self.parameters())}

        def loss(self, phase, batch, step):
            loss = (self.net(batch["x"]).squeeze(1) - batch["y"]).pow(2).mean()
            return loss, {"mse": loss.detach()}

    def data():
        g = torch.Generator().manual_seed(5)
        x = torch.randn(96, 6, generator=g)
        return {"x": x, "y": x.sum(1).sin()}
''')

SCRIPT = MODEL + textwrap.dedent('''
    import sys
    from coursekit.train import TrainConfig, fit
    from coursekit.seed import seed_everything

    seed_everything(0)
    model = Regressor()
    result = fit(model, data(), TrainConfig(epochs=2, batch_size=16, lr=1e-2, device="cpu",
                                            lr_schedule="cosine"))
    if result.is_main:
        torch.save({"state": model.state_dict(), "losses": result.history.losses["mse"]},
                   sys.argv[1])
''')


def _torchrun(*args, timeout=120):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=timeout)


@pytest.mark.slow
def test_two_processes_equal_one_with_the_same_global_batch(tmp_path):
    script, out = tmp_path / "ddp_fit.py", tmp_path / "weights.pt"
    script.write_text(SCRIPT)
    result = _torchrun(str(script), str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    two = torch.load(out, weights_only=True)

    namespace = {}
    exec(MODEL, namespace)  # the same model and data, in this single process
    torch.manual_seed(0)
    model = namespace["Regressor"]()
    one = fit(model, namespace["data"](), TrainConfig(epochs=2, batch_size=16, lr=1e-2,
                                                      device="cpu", lr_schedule="cosine"))
    for name, value in model.state_dict().items():
        torch.testing.assert_close(two["state"][name], value, rtol=1e-5, atol=1e-6)
    assert one.history.losses["mse"] == pytest.approx(two["losses"], rel=1e-5)
    assert not torch.equal(two["state"]["net.0.weight"], namespace["Regressor"]().state_dict()[
        "net.0.weight"])  # training moved the weights


@pytest.mark.slow  # four process starts: about 30 CPU seconds
def test_command_line_trains_and_resumes_under_torchrun(tmp_path):
    out = tmp_path / "vae"
    args = ["-m", "coursekit", "train", "vae", "--data", "digits", "--out", str(out), "--quiet",
            "--device", "cpu"]
    first = _torchrun(*args, "--epochs", "1")
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stdout.count("vae on digits") == 1  # only rank 0 reports
    assert {p.name for p in out.iterdir()} == {"checkpoint.pt", "metrics.json", "samples.png",
                                              "losses.png"}
    second = _torchrun(*args, "--epochs", "2", "--resume")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumed from epoch 1" in second.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["history"]["epochs"] == 2 and metrics["processes"] == 2
