"""Class labels: one check of their contract and one seeded draw of a labelled subset
(Chapters 6 and 8: learning from a few labels)."""

from __future__ import annotations

import numpy as np

from coursekit.utils import to_numpy

__all__ = ["check_labels", "draw_labelled"]


def check_labels(labels, num_classes: int, index=None, name: str = "labels", *,
                 n: int | None = None, every_class: bool = True):
    """Validate integer class labels ``(N,)`` (a tensor or an array) and return them unchanged.

    Args:
        labels: the classes, integers in ``0 .. num_classes - 1``.
        num_classes: K.
        index: rows of a labelled subset (checked: in range, no repeats); the class check then
            looks at those rows only.
        name: what to call ``labels`` in the messages.
        n: the number of images the labels go with (checked when given).
        every_class: every class must have at least one (labelled) example.

    Raises:
        ValueError: naming the shape, the offending values, the index's fault, or the missing
            classes.

    Example:
        >>> check_labels(np.array([0, 1, 1]), 2).tolist()
        [0, 1, 1]
        >>> check_labels([0, 2], 3)
        Traceback (most recent call last):
        ...
        ValueError: no labelled example of class(es) [1]: every class needs at least one
    """
    values = to_numpy(labels)
    if values.ndim != 1 or not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"{name} must be a 1-D integer array, got shape {values.shape} and "
                         f"dtype {values.dtype}")
    if n is not None and len(values) != n:
        raise ValueError(f"{len(values)} {name} for {n} images")
    bad = (values < 0) | (values >= num_classes)
    if bad.any():
        raise ValueError(f"{name} must lie in 0..{num_classes - 1}, got "
                         f"{sorted(set(values[bad].tolist()))[:10]}")
    if index is not None:
        index = np.asarray(index)
        if index.ndim != 1 or (index.size and (index.min() < 0 or index.max() >= len(values))):
            raise ValueError(f"the labelled index must be 1-D with entries in 0..{len(values) - 1}")
        if len(np.unique(index)) != len(index):
            raise ValueError("the labelled index repeats an entry")
        values = values[index]
    missing = sorted(set(range(num_classes)) - set(values.tolist())) if every_class else []
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
