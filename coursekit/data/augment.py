"""Random shifts of images by whole pixels, the one augmentation the course's digit models use
(Chapters 5 and 6: the feature network of FID and the M2 classifier)."""

from __future__ import annotations

import torch
from torch.nn import functional as F

__all__ = ["random_shift"]


def random_shift(x: torch.Tensor, max_shift: int,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Shift each image of ``x`` (B, C, H, W) by a random whole number of pixels in
    ``-max_shift..max_shift`` along each axis, filling with zeros (the background). Integer
    shifts keep grey levels exact, so ``x`` may be integer levels and a categorical likelihood
    still applies.

    Example:
        >>> x = torch.arange(16.0).view(1, 1, 4, 4)
        >>> torch.equal(random_shift(x, 0), x)
        True
        >>> y = random_shift(x.repeat(50, 1, 1, 1), 1, torch.Generator().manual_seed(0))
        >>> y.shape, bool((y.sum((1, 2, 3)) <= x.sum()).all())
        (torch.Size([50, 1, 4, 4]), True)
    """
    if x.ndim != 4:
        raise ValueError(f"x must be (B, C, H, W), got shape {tuple(x.shape)}")
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0, got {max_shift}")
    if max_shift == 0:
        return x
    b, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4)                              # (B, C, H + 2s, W + 2s)
    dy = torch.randint(0, 2 * max_shift + 1, (b,), device=x.device, generator=generator)
    dx = torch.randint(0, 2 * max_shift + 1, (b,), device=x.device, generator=generator)
    rows = (dy[:, None] + torch.arange(h, device=x.device))          # (B, H)
    cols = (dx[:, None] + torch.arange(w, device=x.device))          # (B, W)
    index = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()                      # (B, C, H, W)
