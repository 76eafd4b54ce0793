"""Seeding every random number generator the course uses (intro, Chapter 4).

The same seed on the CPU gives the same numbers: every notebook, test and training run calls
``seed_everything`` and records the seed it returns.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

__all__ = ["seed_everything"]


def seed_everything(seed: int | None = None, *, deterministic: bool = False) -> int:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and every GPU).

    Args:
        seed: a non-negative integer below 2**32, or ``None`` to draw one from the operating
            system (the drawn value is returned so that the run can record it).
        deterministic: also ask cuDNN and torch for deterministic kernels (slower on a GPU; the
            CPU kernels the course uses are deterministic already).

    Returns:
        The seed that was used.

    Raises:
        ValueError: the seed is not an integer in ``[0, 2**32)``.

    Example:
        >>> _ = seed_everything(0); a = torch.rand(2)
        >>> _ = seed_everything(0); b = torch.rand(2)
        >>> bool(torch.equal(a, b))
        True
    """
    if seed is None:
        seed = int.from_bytes(os.urandom(4), "little")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds the CPU and all CUDA generators
    if deterministic:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)
    return seed
