"""Learning from few labels: label draws, semi-supervised data for M2, augmentations for 8x8
digits, SimCLR-style contrastive pretraining and linear probes (Chapter 6).

Self-supervised learning trains a representation on a task made from the data alone (here:
recognise two augmented views of the same image among the views of other images, the InfoNCE
loss of van den Oord et al. 2018 as used by SimCLR, Chen et al. 2020). A representation is judged
by a *linear probe*: a logistic regression trained on the few labelled examples, scored on the
test split; the pretext loss says nothing about that by itself.

The SimCLR model itself (``ContrastiveEncoder``, ``info_nce``) lives in
``coursekit.models.contrastive`` with the other models ``fit`` trains; it is re-exported here.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F

from coursekit.models.contrastive import ContrastiveConfig, ContrastiveEncoder, info_nce
from coursekit.models.m2 import UNLABELLED

__all__ = ["draw_labelled", "check_labels", "semi_supervised_data", "augment_digits",
           "info_nce", "ContrastiveConfig", "ContrastiveEncoder", "linear_probe"]


# ------------------------------------------------------------------------------------ labels

def check_labels(labels, num_classes: int, index=None, name: str = "labels") -> np.ndarray:
    """Validate integer class labels (and an index of labelled rows); return them as NumPy.

    Raises:
        ValueError: a label outside ``0..num_classes-1``, an index out of range or repeated,
            or a class with no labelled example (the message names the classes).
    """
    labels = np.asarray(labels.cpu() if torch.is_tensor(labels) else labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name} must be a 1-D integer array, got shape {labels.shape} and "
                         f"dtype {labels.dtype}")
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        raise ValueError(f"{name} must lie in 0..{num_classes - 1}, got "
                         f"{sorted(set(labels[bad].tolist()))[:10]}")
    if index is not None:
        index = np.asarray(index)
        if index.ndim != 1 or (index.size and (index.min() < 0 or index.max() >= len(labels))):
            raise ValueError(f"the labelled index must be 1-D with entries in 0..{len(labels) - 1}")
        if len(np.unique(index)) != len(index):
            raise ValueError("the labelled index repeats an entry")
        labels = labels[index]
    missing = sorted(set(range(num_classes)) - set(labels.tolist()))
    if missing:
        raise ValueError(f"no labelled example of class(es) {missing}: every class needs at "
                         f"least one")
    return labels


def draw_labelled(labels, per_class: int, seed: int, num_classes: int | None = None) -> np.ndarray:
    """Draw ``per_class`` labelled examples of every class, without replacement; the sorted row
    indices. The same seed gives the same draw.

    Example:
        >>> y = np.array([0, 1, 0, 1, 0, 1])
        >>> draw_labelled(y, 1, seed=0).tolist() == draw_labelled(y, 1, seed=0).tolist()
        True
        >>> len(draw_labelled(y, 2, seed=1))
        4
    """
    labels = np.asarray(labels.cpu() if torch.is_tensor(labels) else labels)
    num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
    check_labels(labels, num_classes)
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    rng = np.random.default_rng(seed)
    index = []
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        if len(members) < per_class:
            raise ValueError(f"class {c} has {len(members)} examples, fewer than per_class="
                             f"{per_class}")
        index.extend(rng.choice(members, per_class, replace=False).tolist())
    return np.sort(np.array(index, dtype=np.int64))


def semi_supervised_data(images: torch.Tensor, labels, labelled_index, num_classes: int,
                         levels: torch.Tensor | None = None,
                         balance: bool = True, prior=None) -> dict[str, torch.Tensor]:
    """The training data of M2: every image once with ``y = -1`` except the labelled ones.

    With ``balance`` the labelled rows are repeated until they are about as many as the
    unlabelled rows, so a shuffled batch holds both kinds in similar numbers (the usual
    practice; with 100 labels in 1,000 images a batch of 100 would otherwise hold about 10).

    Args:
        images: ``(N, C, H, W)`` in ``[0, 1]``.
        labels: ``(N,)`` integer classes (only the rows in ``labelled_index`` are used).
        labelled_index: the rows whose label the learner may see.
        num_classes: K.
        levels: ``(N, C, H, W)`` grey levels for the categorical likelihood, optional.
        prior: ``(N, K)`` class probabilities per image, optional: M2's empirical-Bayes prior on
            ``y`` for the unlabelled images (rows are floored at 1e-3 and renormalised, so no
            class is ruled out).

    Returns:
        ``{"x", "y"}`` (and ``"levels"``, ``"prior"``) with the repeated rows appended.

    Raises:
        ValueError: lengths differ, labels outside ``0..K-1``, or a class has no labelled row.
    """
    labels = torch.as_tensor(np.asarray(labels.cpu() if torch.is_tensor(labels) else labels))
    if len(labels) != len(images) or (levels is not None and len(levels) != len(images)):
        raise ValueError(f"images, labels and levels must have the same length, got "
                         f"{len(images)}, {len(labels)} and "
                         f"{None if levels is None else len(levels)}")
    index = np.asarray(labelled_index, dtype=np.int64)
    check_labels(labels, num_classes, index)
    y = torch.full((len(images),), UNLABELLED, dtype=torch.int64)
    y[index] = labels[index].long()
    repeat = max(1, (len(images) - len(index)) // len(index)) if balance else 1
    rows = torch.from_numpy(np.concatenate([np.arange(len(images))] + [index] * (repeat - 1)))
    data = {"x": images[rows], "y": y[rows]}
    if levels is not None:
        data["levels"] = levels[rows]
    if prior is not None:
        prior = torch.as_tensor(np.asarray(prior), dtype=torch.float32)
        if prior.shape != (len(images), num_classes) or not torch.isfinite(prior).all() \
                or (prior < 0).any():
            raise ValueError(f"prior must be ({len(images)}, {num_classes}) non-negative "
                             f"probabilities, got shape {tuple(prior.shape)}")
        prior = prior.clamp_min(1e-3)
        data["prior"] = (prior / prior.sum(1, keepdim=True))[rows]
    return data


# ------------------------------------------------------------------------------ augmentation

def augment_digits(x: torch.Tensor, max_degrees: float = 15.0, max_shift: float = 1.0,
                   scale: tuple[float, float] = (0.85, 1.15), noise: float = 0.05,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """A random view of each small digit image, ``(B, C, H, W) -> (B, C, H, W)`` in ``[0, 1]``.

    What keeps a digit's identity at 8x8: a small rotation (``max_degrees``; not 180, which turns
    6 into 9), a shift of about a pixel, a zoom in ``scale``, and a little pixel noise. No flips
    (a mirrored 2 or 3 is not a digit) and no colour changes (there is one channel). One random
    affine map per image, applied by bilinear resampling.

    Example:
        >>> x = torch.rand(4, 1, 8, 8)
        >>> g = torch.Generator().manual_seed(0)
        >>> augment_digits(x, generator=g).shape
        torch.Size([4, 1, 8, 8])
    """
    if x.ndim != 4:
        raise ValueError(f"augment_digits expects images (B, C, H, W), got {tuple(x.shape)}")
    b, _, h, w = x.shape

    def uniform(low, high):
        return low + (high - low) * torch.rand(b, generator=generator).to(x.device)

    angle = uniform(-max_degrees, max_degrees) * math.pi / 180.0          # (B,)
    zoom = uniform(*scale)                                                 # (B,)
    # translations in the normalised coordinates of affine_grid: 2 / side per pixel
    tx, ty = uniform(-max_shift, max_shift) * 2 / w, uniform(-max_shift, max_shift) * 2 / h
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, -sin, tx], 1),
                         torch.stack([sin, cos, ty], 1)], 1).to(x.dtype)  # (B, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if noise > 0:
        out = out + noise * torch.randn(out.shape, generator=generator).to(x.device)
    return out.clamp(0, 1)


# ------------------------------------------------------------------------------- linear probes

def linear_probe(train_features, train_labels, test_features, test_labels,
                 unlabelled_features=None, C: float = 1.0) -> float:
    """Accuracy of a logistic regression trained on a few labelled representations.

    Features are standardised with the mean and spread of ``unlabelled_features`` (all training
    images, labels unused) when given, else of ``train_features``: with 10 labelled images the
    spread of those 10 alone is too noisy. scikit-learn's ``LogisticRegression`` does the fit.

    Raises:
        ValueError: lengths differ or the labelled set lacks a class that the test set has.
    """
    from sklearn.linear_model import LogisticRegression

    def as_np(a):
        return np.asarray(a.detach().cpu() if torch.is_tensor(a) else a, dtype=np.float64)

    xtr, xte = as_np(train_features), as_np(test_features)
    ytr = np.asarray(train_labels.cpu() if torch.is_tensor(train_labels) else train_labels)
    yte = np.asarray(test_labels.cpu() if torch.is_tensor(test_labels) else test_labels)
    if len(xtr) != len(ytr) or len(xte) != len(yte):
        raise ValueError(f"features and labels must have the same length, got {len(xtr)} and "
                         f"{len(ytr)} (train), {len(xte)} and {len(yte)} (test)")
    missing = sorted(set(yte.tolist()) - set(ytr.tolist()))
    if missing:
        raise ValueError(f"no labelled example of class(es) {missing} that the test set has")
    ref = xtr if unlabelled_features is None else as_np(unlabelled_features)
    mean, std = ref.mean(0), ref.std(0) + 1e-6
    clf = LogisticRegression(C=C, max_iter=2000)
    clf.fit((xtr - mean) / std, ytr)
    return float((clf.predict((xte - mean) / std) == yte).mean())
