"""The shipped feature networks: small files, the held-out accuracy their docstring states, a
short dry run of the training command, and a clear error for Inception offline."""

import pytest
import torch

from coursekit import data
from coursekit.features import (FeatureNet, FeatureNetConfig, accuracy, class_probs,
                                extract_features, feature_net, main, weights_path)


@pytest.mark.parametrize("name", ["digits", "mnist"])
def test_shipped_weights_are_small(name):
    assert weights_path(name).stat().st_size < 1_000_000


def test_digits_net_held_out_accuracy():
    test = data.digits("test")  # never seen in training (it used train + val)
    net = feature_net("digits")
    assert accuracy(net, test.images, test.labels) >= 0.97
    feats = extract_features(net, test.images[:10])
    assert feats.shape == (10, 128) and feats.dtype == torch.float64 and bool((feats >= 0).all())
    probs = class_probs(net, test.images[:10])
    assert torch.allclose(probs.sum(1), torch.ones(10, dtype=torch.float64))


def test_mnist_net_held_out_accuracy():
    test = data.mnist("test", source="offline")  # 100 per class, never seen in training
    assert torch.bincount(test.labels).tolist() == [100] * 10
    assert accuracy(feature_net("mnist"), test.images, test.labels) >= 0.97


def test_wrong_input_shape_is_named():
    with pytest.raises(ValueError, match=r"\(N, 1, 8, 8\).*\(2, 1, 28, 28\)"):
        feature_net("digits").features(torch.zeros(2, 1, 28, 28))
    with pytest.raises(ValueError, match="available"):
        feature_net("cifar")


def test_inception_offline_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSEKIT_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(RuntimeError, match="COURSEKIT_OFFLINE"):
        feature_net("inception")


def test_training_command_dry_run(tmp_path, capsys):
    assert main(["--dataset", "digits", "--epochs", "1", "--out-dir", str(tmp_path),
                 "--quiet"]) == 0
    assert "held-out accuracy" in capsys.readouterr().out
    checkpoint = torch.load(tmp_path / "digits_classifier.pt", weights_only=True)
    net = FeatureNet(FeatureNetConfig(**checkpoint["config"]))
    net.load_state_dict(checkpoint["state_dict"])
    assert checkpoint["meta"]["train"]["seed"] == 0
