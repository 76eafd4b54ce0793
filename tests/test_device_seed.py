"""coursekit.device and coursekit.seed: device choice, refusals, and reproducible seeding."""

import random

import numpy as np
import pytest
import torch

from coursekit import amp_dtype, available_devices, get_device, seed_everything


def test_auto_picks_best_available():
    assert get_device("auto") == torch.device(available_devices()[0])
    assert available_devices()[-1] == "cpu"


def test_explicit_cpu_is_honoured():
    assert get_device("cpu") == torch.device("cpu")
    assert get_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_missing_cuda_is_refused_with_the_alternatives():
    with pytest.raises(ValueError, match=r"'cuda:3' is not available.*available: \[.*'cpu'\]"):
        get_device("cuda:3")


def test_nonsense_device_is_refused():
    with pytest.raises(ValueError, match="unknown device 'gpu0'"):
        get_device("gpu0")
    with pytest.raises(ValueError, match="device must be a string"):
        get_device(3)


def test_amp_dtype_cpu_is_full_precision():
    assert amp_dtype("cpu") is None
    assert amp_dtype(torch.device("cpu")) is None


def test_seed_everything_reproduces_python_numpy_torch():
    def draw():
        return random.random(), np.random.rand(), torch.rand(3).tolist()

    assert seed_everything(123) == 123
    first = draw()
    seed_everything(123)
    assert draw() == first
    seed_everything(124)
    assert draw() != first


def test_seed_none_draws_and_reports_a_seed():
    seed = seed_everything(None)
    assert 0 <= seed < 2**32
    a = torch.rand(2)
    seed_everything(seed)
    assert torch.equal(torch.rand(2), a)


@pytest.mark.parametrize("bad", [-1, 2**32, 1.5, "7", True])
def test_bad_seed_is_refused(bad):
    with pytest.raises(ValueError, match="seed must be an integer"):
        seed_everything(bad)
