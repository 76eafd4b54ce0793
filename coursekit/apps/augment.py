"""Augmenting a small labelled set: samples of a class-conditional generative model, against
using the unlabelled images directly, judged by a classifier trained on the result and tested on
real held-out images (Chapter 8).

The setting is semi-supervised (Kingma et al. 2014): ``per_class`` labelled images per class and
a larger pool of unlabelled ones. Two ways to use the pool are compared in the same run:

* a class-conditional generator trained on labelled and unlabelled images together (Chapter 6's
  M2, ``coursekit.models.M2``), whose samples of each class join the labelled set
  (``class_samples``), each with a ``weight`` below a real image's 1, chosen on ``val``;
* the unlabelled images themselves, labelled by label spreading on a nearest-neighbour graph
  (Zhou et al. 2004; ``spread_labels``) and added to the training set: self-training with the
  graph's labels.

``shift_augment`` is the classic trick (every one-pixel shift), a baseline that needs no pool.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from coursekit.data.labels import check_labels

__all__ = ["check_labels", "sample_labelled", "shift_augment", "class_samples", "spread_labels",
           "AugmentConfig", "classifier_accuracy"]


def sample_labelled(labels: torch.Tensor, per_class: int, num_classes: int = 10,
                    seed: int = 0) -> torch.Tensor:
    """Indices of ``per_class`` examples of each class, drawn without replacement, class by
    class (``(num_classes * per_class,)``, seeded).

    Example:
        >>> idx = sample_labelled(torch.tensor([0, 1, 0, 1, 0, 1]), 2, num_classes=2)
        >>> torch.tensor([0, 1, 0, 1, 0, 1])[idx].tolist()
        [0, 0, 1, 1]
    """
    check_labels(labels, num_classes, every_class=False)
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    gen = torch.Generator().manual_seed(seed)
    out = []
    for c in range(num_classes):
        members = torch.nonzero(labels == c).flatten()
        if len(members) < per_class:
            raise ValueError(f"class {c} has {len(members)} examples, fewer than per_class="
                             f"{per_class}")
        out.append(members[torch.randperm(len(members), generator=gen)[:per_class]])
    return torch.cat(out)


def shift_augment(x: torch.Tensor, y: torch.Tensor, shift: int = 1,
                  num_classes: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Every translation of each image by ``-shift..shift`` pixels in each direction except
    the identity (zero padding): ``((2 shift + 1)^2 - 1) N`` images, each with its source's label.

    Returns:
        ``(x_aug (K*N, C, H, W), y_aug (K*N,))``, ordered shift by shift.
    """
    if x.ndim != 4:
        raise ValueError(f"x must be (N, C, H, W), got {tuple(x.shape)}")
    check_labels(y, num_classes, n=len(x), every_class=False)
    if shift < 1 or shift >= min(x.shape[2:]):
        raise ValueError(f"shift must lie in [1, {min(x.shape[2:]) - 1}], got {shift}")
    H, W = x.shape[2:]
    padded = F.pad(x, (shift, shift, shift, shift))                       # (N, C, H+2s, W+2s)
    xs, ys = [], []
    for dy in range(-shift, shift + 1):
        for dx in range(-shift, shift + 1):
            if dy == dx == 0:
                continue
            top, left = shift - dy, shift - dx
            xs.append(padded[:, :, top:top + H, left:left + W])           # (N, C, H, W)
            ys.append(y)
    return torch.cat(xs), torch.cat(ys)


@torch.no_grad()
def class_samples(model, per_class: int, num_classes: int = 10,
                  seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_class`` samples of each class from a class-conditional generator (anything with
    ``sample(n, labels=..., generator=...)``, e.g. ``M2``): a fresh ``z ~ N(0, I)`` for each
    image, decoded given its class.

    Returns:
        ``(x_gen (num_classes * per_class, C, H, W), y_gen)``, class by class.
    """
    if per_class < 1 or num_classes < 1:
        raise ValueError(f"need per_class >= 1 and num_classes >= 1, got {per_class}, "
                         f"{num_classes}")
    device = next(model.parameters()).device
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    gen = torch.Generator(device=device).manual_seed(seed)
    return model.sample(len(labels), labels=labels.to(device), generator=gen).cpu(), labels


def spread_labels(images, labels: torch.Tensor, labelled_index, num_classes: int = 10,
                  neighbours: int = 7, *, queries=None, soft: bool = False,
                  max_iter: int = 100):
    """A class for every image by label spreading (Zhou et al. 2004, scikit-learn's
    ``LabelSpreading`` on a ``neighbours``-nearest-neighbour graph) from the rows in
    ``labelled_index`` alone; those rows keep their true label. An image whose part of the graph
    holds no label takes the most common spread class (scikit-learn leaves it undefined).
    Chapter 6 uses it as the baseline to beat, and its soft answer as M2's prior on y.

    Args:
        images: ``(N, ...)`` training images (tensor or array), flattened to ``(N, D)``.
        labels: ``(N,)`` int64 classes; only the rows of ``labelled_index`` are read.
        labelled_index: the rows whose label is given.
        num_classes: K.
        neighbours: k of the kNN graph.
        queries: ``(M, ...)`` other images (the validation or test split) to classify by the
            graph instead: each takes the classes its ``neighbours`` nearest training images
            were given (class 0 where none was given one, as scikit-learn's ``predict``).
        soft: return the graph's class probabilities ``(N, K)`` (or ``(M, K)``), not classes:
            the labelled rows are not clamped to one-hot, and an image that no label reached
            gets the uniform distribution.
        max_iter: iterations of the spreading (it stops earlier once converged).

    Returns:
        ``(N,)`` (or ``(M,)``) int64 classes, or with ``soft`` float64 probabilities.

    Example:
        >>> x = torch.tensor([[0.0], [0.1], [0.2], [5.0], [5.1], [5.2]]).view(6, 1, 1, 1)
        >>> y = torch.tensor([0, 0, 0, 1, 1, 1])
        >>> spread_labels(x, y, [0, 3], 2, neighbours=2).tolist()
        [0, 0, 0, 1, 1, 1]
        >>> spread_labels(x, y, [0, 3], 2, neighbours=2, queries=x[[2, 5]] + 0.05).tolist()
        [0, 1]
        >>> spread_labels(x, y, [0, 3], 2, neighbours=2, soft=True).argmax(1).tolist()
        [0, 0, 0, 1, 1, 1]
    """
    import warnings

    from sklearn.semi_supervised import LabelSpreading

    check_labels(labels, num_classes, n=len(images), every_class=False)
    flat = np.asarray(torch.as_tensor(images).flatten(1))  # (N, D)
    index = np.asarray(labelled_index)
    partial = np.full(len(flat), -1)
    partial[index] = np.asarray(labels)[index]
    with warnings.catch_warnings():  # 0 / 0 in components without a label: handled below
        warnings.simplefilter("ignore", RuntimeWarning)
        model = LabelSpreading(kernel="knn", n_neighbors=neighbours, max_iter=max_iter)
        model.fit(flat, partial)
        if queries is None:
            dist = model.label_distributions_  # (N, K) over the classes given
        else:
            dist = model.predict_proba(np.asarray(torch.as_tensor(queries).flatten(1)))
    full = np.zeros((len(dist), num_classes))  # (N, K): a class with no label gets 0
    full[:, model.classes_] = np.nan_to_num(dist)
    empty = full.sum(1) == 0
    if soft:
        full[empty] = 1.0
        return full / full.sum(1, keepdims=True)
    out = full.argmax(1)
    if queries is not None:  # a query no label reached: class 0, as scikit-learn's predict
        return torch.as_tensor(out, dtype=torch.int64)
    if empty.any():
        out[empty] = np.bincount(out[~empty], minlength=num_classes).argmax()
    out[index] = partial[index]
    return torch.as_tensor(out, dtype=torch.int64)


@dataclass
class AugmentConfig:
    per_class: int = 10          # labelled images per class
    generated_per_class: int = 100  # generated images per class
    weights: tuple = (0.1, 0.3, 1.0)  # sample weights of an added image (a real one has 1),
    #                                   the one used chosen on the validation split
    neighbours: int = 7          # the kNN graph of label spreading
    svm_c: float = 10.0          # the RBF SVM's C (fixed, not tuned on the test split)
    draws: int = 10              # independent draws of the labelled set


def classifier_accuracy(x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor,
                        y_test: torch.Tensor, weights: np.ndarray | None = None,
                        svm_c: float = 10.0) -> float:
    """Test accuracy of an RBF support vector machine (scikit-learn ``SVC``, ``gamma="scale"``)
    trained on the flattened images with optional per-example ``weights``."""
    from sklearn.svm import SVC

    if len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise ValueError(f"images and labels differ in number: {len(x_train)} vs "
                         f"{len(y_train)} (train), {len(x_test)} vs {len(y_test)} (test)")
    if weights is not None and len(weights) != len(x_train):
        raise ValueError(f"{len(weights)} weights for {len(x_train)} training images")
    clf = SVC(C=svm_c, gamma="scale")
    clf.fit(x_train.flatten(1).numpy(), y_train.numpy(), sample_weight=weights)
    return float((clf.predict(x_test.flatten(1).numpy()) == y_test.numpy()).mean())
