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

import numpy as np
import torch

from coursekit.data.augment import augment_digits
from coursekit.data.labels import check_labels, draw_labelled
from coursekit.models.contrastive import ContrastiveConfig, ContrastiveEncoder, info_nce
from coursekit.models.m2 import UNLABELLED
from coursekit.utils import to_numpy

__all__ = ["draw_labelled", "check_labels", "semi_supervised_data", "augment_digits",
           "info_nce", "ContrastiveConfig", "ContrastiveEncoder", "linear_probe"]


# ------------------------------------------------------------------------------------ labels
# check_labels and draw_labelled live in coursekit.data.labels (re-exported here)

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

    Example:
        >>> data = semi_supervised_data(torch.rand(6, 1, 8, 8), [0, 1, 0, 1, 0, 1], [0, 1], 2)
        >>> data["y"].tolist()  # 4 unlabelled rows, the 2 labelled ones repeated twice
        [0, 1, -1, -1, -1, -1, 0, 1]
    """
    labels = torch.as_tensor(to_numpy(labels))
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


# augment_digits lives in coursekit.data.augment (re-exported here)

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

    xtr, xte = to_numpy(train_features, np.float64), to_numpy(test_features, np.float64)
    ytr, yte = to_numpy(train_labels), to_numpy(test_labels)
    if len(xtr) != len(ytr) or len(xte) != len(yte):
        raise ValueError(f"features and labels must have the same length, got {len(xtr)} and "
                         f"{len(ytr)} (train), {len(xte)} and {len(yte)} (test)")
    missing = sorted(set(yte.tolist()) - set(ytr.tolist()))
    if missing:
        raise ValueError(f"no labelled example of class(es) {missing} that the test set has")
    ref = xtr if unlabelled_features is None else to_numpy(unlabelled_features, np.float64)
    mean, std = ref.mean(0), ref.std(0) + 1e-6
    clf = LogisticRegression(C=C, max_iter=2000)
    clf.fit((xtr - mean) / std, ytr)
    return float((clf.predict((xte - mean) / std) == yte).mean())
