"""Near-copies of training examples: the nearest-neighbour distance ratio (Chapters 9 and 10).

A generated image that is a near-copy of one training image lies much closer to that image than
to any other: the ratio ``d_1 / d_2`` of its Euclidean distances to its nearest and second-nearest
training images is small. Held-out real images give the reference for what "not a copy" looks
like; a ratio below ``1/3`` is the usual alarm, the criterion of Yoon et al. (2023) and Gu et al.
(2023); Carlini et al. (2023) use a related but different distance, relative to several nearest
neighbours, not this ratio.
"""

from __future__ import annotations

import torch

__all__ = ["nn_distance_ratio"]


@torch.no_grad()
def nn_distance_ratio(samples: torch.Tensor, train: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """``d_1 / d_2`` for each sample: its distances to the nearest and second-nearest training
    example (flattened, Euclidean), shape ``(N,)``; 0 for an exact copy.

    Raises:
        ValueError: fewer than two training examples, or the two sets differ in shape.

    Example:
        >>> train = torch.eye(4)
        >>> nn_distance_ratio(torch.stack([train[0], torch.full((4,), 0.25)]), train).tolist()
        [0.0, 1.0]
    """
    if len(train) < 2:
        raise ValueError(f"need at least two training examples, got {len(train)}")
    a, b = samples.flatten(1).double(), train.flatten(1).double()
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"samples {tuple(samples.shape)} and train {tuple(train.shape)} have "
                         f"different sizes per example")
    out = []
    for start in range(0, len(a), chunk):
        d = torch.cdist(a[start:start + chunk], b)                   # (chunk, M)
        two = d.topk(2, dim=1, largest=False).values                  # (chunk, 2)
        out.append(two[:, 0] / two[:, 1].clamp(min=1e-12))
    return torch.cat(out)
