"""Random views of images: shifts by whole pixels (Chapters 5 and 6: the feature network of FID
and the M2 classifier) and small random affine maps of digits (Chapter 6: SimCLR's views and
M2's consistency term)."""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

__all__ = ["random_shift", "augment_digits"]


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
