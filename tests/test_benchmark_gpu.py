"""benchmarks/gpu.py without a GPU: it says so and exits 0; its CPU-vs-GPU comparison draws the
same noise on every device, so two evaluations of the first-step losses agree exactly."""

import importlib.util
import math

import pytest
import torch


def _load(root):
    spec = importlib.util.spec_from_file_location("bench_gpu", root / "benchmarks" / "gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_without_cuda_it_says_so_and_exits_0(root, capsys):
    assert _load(root).main([]) == 0
    assert "no CUDA device" in capsys.readouterr().out


def test_first_step_losses_use_the_same_noise_everywhere(root):
    bench = _load(root)
    cpu, original = torch.device("cpu"), torch.randn
    for name, (model, data, _, _) in bench._models().items():
        a = bench.first_step_losses(model, data, cpu, amp=False, batch_size=32)
        torch.rand(100)  # the global RNG moves on: the losses must not
        b = bench.first_step_losses(model, data, cpu, amp=False, batch_size=32)
        assert a == b and all(math.isfinite(v) for v in a.values()), name
        assert set(a) == set(model.parameter_groups())  # every phase, the generator's too
    assert torch.randn is original  # the patch is undone
