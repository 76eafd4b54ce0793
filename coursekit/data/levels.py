"""Grey values in ``[0, 1]`` and integer grey levels ``0 .. L-1``, both ways, for torch tensors
and NumPy arrays alike (Chapters 1 and 4: the digits have ``L = 17`` levels, MNIST 256).

    level = round(x * (L - 1)),    x = level / (L - 1)
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["to_levels", "from_levels", "batch_levels", "check_levels"]


def _check(num_levels: int) -> None:
    if int(num_levels) < 2:
        raise ValueError(f"num_levels must be >= 2, got {num_levels}")


def to_levels(x, num_levels: int):
    """The nearest grey level of each value: int64, same type (tensor or array) as ``x``.

    Example:
        >>> to_levels(torch.tensor([0.0, 0.5, 1.0]), 17).tolist()
        [0, 8, 16]
        >>> to_levels(np.array([0.26]), 5).tolist()
        [1]
    """
    _check(num_levels)
    if torch.is_tensor(x):
        return torch.round(x * (num_levels - 1)).long()
    return np.rint(np.asarray(x) * (num_levels - 1)).astype(np.int64)


def from_levels(levels, num_levels: int, dtype=None):
    """Grey values ``level / (L - 1)`` in ``[0, 1]`` (float32 unless ``dtype`` says otherwise).

    Example:
        >>> from_levels(torch.tensor([0, 8, 16]), 17).tolist()
        [0.0, 0.5, 1.0]
    """
    _check(num_levels)
    if torch.is_tensor(levels):
        return levels.to(dtype or torch.float32) / (num_levels - 1)
    return (np.asarray(levels) / (num_levels - 1)).astype(dtype or np.float32)


def batch_levels(batch: dict, num_levels: int):
    """The grey levels a batch holds: its ``"levels"``, else its ``"x"`` rounded to them."""
    levels = batch.get("levels")
    return to_levels(batch["x"], num_levels) if levels is None else levels


def check_levels(levels, num_levels: int) -> None:
    """Raise a ``ValueError`` naming the dtype or the range unless ``levels`` are integers in
    ``0 .. num_levels - 1`` (a model's ``check_data`` calls this once, before training).

    Example:
        >>> check_levels(torch.tensor([0, 17]), 17)
        Traceback (most recent call last):
        ...
        ValueError: levels must lie in 0..16, got values from 0 to 17
    """
    if levels.is_floating_point():
        raise ValueError(f"levels must be integers, got dtype {levels.dtype}")
    if levels.numel() and (int(levels.min()) < 0 or int(levels.max()) >= num_levels):
        raise ValueError(f"levels must lie in 0..{num_levels - 1}, got values from "
                         f"{int(levels.min())} to {int(levels.max())}")
