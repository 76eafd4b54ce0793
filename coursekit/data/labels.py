"""Class labels: one check of their contract and one seeded draw of a labelled subset
(Chapters 6 and 8: learning from a few labels)."""

from __future__ import annotations

import numpy as np

from coursekit.utils import to_numpy

__all__ = ["check_labels", "draw_labelled"]


def check_labels(labels, num_classes: int, index=None, name: str = "labels") -> np.ndarray:
    """Validate integer class labels (and an index of labelled rows); return them as NumPy.

    Raises:
        ValueError: a label outside ``0..num_classes-1``, an index out of range or repeated,
            or a class with no labelled example (the message names the classes).
    """
    labels = to_numpy(labels)
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
    labels = to_numpy(labels)
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
