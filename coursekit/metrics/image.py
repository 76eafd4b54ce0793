"""Paired image metrics: PSNR and SSIM (Chapter 5).

Both compare an image with *its own* ground truth (a reconstruction, a denoised or inpainted
image), so they fit autoencoders and restoration; they cannot judge unconditional samples, which
have no ground truth to compare with (use ``fid``/``kid``/``precision_recall`` there).

Conventions, and how popular libraries differ:

* Values are **per image** for ``(B, C, H, W)`` batches, computed in float64; ``reduction="mean"``
  averages them. ``psnr(..., reduction="pooled")`` is torchmetrics' default instead: one PSNR of the
  MSE pooled over the whole batch, which is never larger than the mean of per-image PSNRs (the
  logarithm is concave), Chapter 5 measures the gap.
* SSIM is Wang et al. (2004): an 11x11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03,
  population (not sample) variances, and the mean of the SSIM map over the *valid* region (pixels
  whose window lies inside the image), averaged over channels. This equals scikit-image's
  ``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
  data_range=R)``. torchmetrics (1.5 and later) averages the *uncropped* map, whose border
  pixels see a reflected window, and so gives a different number; Chapter 5 shows by how much.
"""

from __future__ import annotations

import math

import torch

from coursekit.metrics._base import MeanMetric, check_positive, check_tensor

__all__ = ["psnr", "ssim", "PSNR", "SSIM", "gaussian_window"]

SSIM_WINDOW = 11  # Wang et al. 2004: an 11x11 circular-symmetric Gaussian window ...
SSIM_SIGMA = 1.5  # ... with standard deviation 1.5 pixels
SSIM_K1, SSIM_K2 = 0.01, 0.03  # the stabilising constants C1 = (K1 R)^2, C2 = (K2 R)^2


def _check_pair(x, y, data_range, ranged=("x", "y")) -> float:
    check_tensor("x", x, ndim=4, finite=False)  # finiteness: from the min and max below
    check_tensor("y", y, ndim=4, finite=False)
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape (B, C, H, W), got {tuple(x.shape)} "
                         f"and {tuple(y.shape)}")
    if x.dtype != y.dtype:
        raise TypeError(f"x and y must have the same dtype, got {x.dtype} and {y.dtype}")
    if x.numel() == 0:
        raise ValueError(f"x and y are empty, shape {tuple(x.shape)}")
    data_range = check_positive("data_range", data_range)
    for name, t in (("x", x), ("y", y)):
        if name in ranged:
            _check_range(name, t, data_range)
    return data_range


def _check_range(name: str, t: torch.Tensor, data_range: float) -> None:
    # amin and amax are vectorised reductions (torch.aminmax is several times slower on the
    # CPU); a NaN or an infinity shows in them, so finiteness costs no extra pass
    low, high = float(torch.amin(t)), float(torch.amax(t))
    if not (math.isfinite(low) and math.isfinite(high)):
        check_tensor(name, t)  # raises, counting the NaN and infinite values
    if high - low > data_range * (1 + 1e-6):
        raise ValueError(f"{name} spans [{low:.6g}, {high:.6g}] (width {high - low:.6g}), "
                         f"wider than data_range={data_range:g}: pass the true range of the "
                         f"data (1.0 for [0, 1] images, 255 for uint8 levels)")


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float,
         reduction: str = "none", mask: torch.Tensor | None = None) -> torch.Tensor:
    """Peak signal-to-noise ratio ``10 log10(R^2 / MSE)`` in decibels, per image.

    Args:
        x, y: ``(B, C, H, W)`` images of the same shape and dtype; ``y`` is the reference.
        data_range: ``R``, the width of the value range (1.0 for images in [0, 1]).
        reduction: ``"none"`` (``(B,)``, per image), ``"mean"`` (their mean) or ``"pooled"``
            (PSNR of the MSE pooled over the batch, torchmetrics' default).
        mask: booleans that broadcast to ``(B, C, H, W)``, True on the pixels to score (the
            hidden pixels of Chapter 8's inpainting); None: every pixel.

    Returns:
        float64 tensor, ``inf`` where an image equals its reference.

    Raises:
        ValueError / TypeError: mismatched shapes or dtypes, NaN or Inf, a reference ``y``
            spanning more than ``data_range``, or an ``x`` so far outside it that the MSE
            exceeds ``data_range ** 2``.

    Example:
        >>> x = torch.zeros(2, 1, 4, 4); y = x.clone(); y[0] += 0.1; y[1] += 0.01
        >>> psnr(x, y, data_range=1.0)
        tensor([20.0000, 40.0000], dtype=torch.float64)
        >>> y[0, 0, 0] = 0.0  # the top row exact: scored alone, it is a perfect match
        >>> psnr(x, y, data_range=1.0, mask=torch.arange(4).view(4, 1) == 0)[0]
        tensor(inf, dtype=torch.float64)
    """
    # The reference y is checked against data_range in full (two reductions). The estimate x
    # costs nothing more: if x and y both lay in one range of width R, every squared difference
    # would be at most R^2, so a NaN, an infinity or an MSE above R^2 proves x is out of range
    # (then x is checked in full, to name the fault). A slight overshoot of x passes: PSNR is
    # defined for it, as in scikit-image, which checks neither.
    data_range = _check_pair(x, y, data_range, ranged=("y",))
    if reduction not in ("none", "mean", "pooled"):
        raise ValueError(f"reduction must be one of ['none', 'mean', 'pooled'], got "
                         f"{reduction!r}")
    if mask is None and len(x) == 1 and x.dtype == torch.float64 \
            and not (x.requires_grad or y.requires_grad):
        # One image (scikit-image's case): the difference, one dot product, and the rest in
        # Python floats. On a 512x512 image the two passes and the reference's range check are
        # about 80 % of the call; each further tensor operation on a one-element tensor would
        # cost microseconds (measured in benchmarks/metrics_speed.py).
        diff = (x - y).view(-1)  # (C*H*W,)
        mse = float(torch.dot(diff, diff)) / diff.numel()
        if not mse <= data_range**2 * (1 + 1e-6):  # NaN compares False too
            _check_range("x", x, data_range)
        value = math.inf if mse == 0 else 10 * math.log10(data_range**2 / mse)
        return torch.tensor([value] if reduction == "none" else value, dtype=torch.float64)
    if mask is not None:
        mse = _masked_mse(x, y, mask)
    else:
        B, n = len(x), x[0].numel()
        # The difference in the input dtype (as scikit-image does), squares summed in float64.
        diff = (x - y).reshape(B, n)  # (B, C*H*W)
        mse = torch.linalg.vector_norm(diff, dim=1, dtype=torch.float64).square() / n  # (B,)
    if not bool(torch.all(mse <= data_range**2 * (1 + 1e-6))):  # NaN compares False too
        _check_range("x", x, data_range)
    return _reduce_psnr(mse, data_range, reduction)


def _reduce_psnr(mse: torch.Tensor, data_range: float, reduction: str) -> torch.Tensor:
    if reduction == "pooled":
        mse = mse.mean()
    value = 10 * torch.log10(data_range**2 / mse)
    return _reduce(value, reduction, allowed=("none", "mean", "pooled"))


def _masked_mse(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The mean squared error over the pixels where ``mask`` is True, per image ``(B,)``."""
    if not torch.is_tensor(mask) or mask.dtype != torch.bool:
        raise TypeError(f"mask must be a boolean tensor, got "
                        f"{mask.dtype if torch.is_tensor(mask) else type(mask).__name__}")
    try:
        m = mask.to(x.device).expand_as(x)                                # (B, C, H, W)
    except RuntimeError as err:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to the images' "
                         f"{tuple(x.shape)}") from err
    count = m.flatten(1).sum(1)                                           # (B,)
    if (count == 0).any():
        raise ValueError("the mask selects no pixel of some image: nothing to score")
    sq = (x.double() - y.double()).square().masked_fill(~m, 0.0)          # (B, C, H, W)
    return sq.flatten(1).sum(1) / count


def _reduce(value: torch.Tensor, reduction: str, allowed=("none", "mean")) -> torch.Tensor:
    if reduction not in allowed:
        raise ValueError(f"reduction must be one of {list(allowed)}, got {reduction!r}")
    return value.mean() if reduction == "mean" else value


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """The normalised 1-D Gaussian of SSIM, float64 ``(size,)`` (the 2-D window is its outer
    product), the same taps as ``scipy.ndimage.gaussian_filter(sigma=1.5, truncate=3.5)``.

    Example:
        >>> w = gaussian_window(); w.shape, round(float(w.sum()), 12), int(w.argmax())
        (torch.Size([11]), 1.0, 5)
    """
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-coords.square() / (2 * sigma**2))
    return g / g.sum()


def _valid_filter(s: torch.Tensor, taps: list[float]) -> torch.Tensor:
    """Separable 'valid' correlation of the last two axes with ``taps`` (no padding).

    Shifted in-place sums are faster on the CPU than a depthwise float64 convolution.
    """
    k = len(taps)
    H, W = s.shape[-2:]
    rows = s[..., : W - k + 1] * taps[0]  # (..., H, W - k + 1)
    for i in range(1, k):
        rows.add_(s[..., i: i + W - k + 1], alpha=taps[i])
    out = rows[..., : H - k + 1, :] * taps[0]  # (..., H - k + 1, W - k + 1)
    for i in range(1, k):
        out.add_(rows[..., i: i + H - k + 1, :], alpha=taps[i])
    return out


SSIM_BLOCK_BYTES = 256 * 1024  # working set of one block of rows: small enough for the cache


@torch.no_grad()
def _ssim_map(x: torch.Tensor, y: torch.Tensor, c1: float, c2: float) -> torch.Tensor:
    """SSIM map ``(N, H - 10, W - 10)`` of ``(N, H, W)`` float64 images.

    On the CPU it works through blocks of rows (and groups of small images) whose five
    local-statistic maps fit in the cache: on large images several times faster than filtering
    whole maps. On a GPU, one block holds everything.
    """
    taps = gaussian_window().tolist()
    k = len(taps)
    N, H, W = x.shape
    out = torch.empty(N, H - k + 1, W - k + 1, dtype=torch.float64, device=x.device)
    rows, group = H, N
    if x.device.type == "cpu":
        rows = max(2 * k, SSIM_BLOCK_BYTES // (5 * 8 * W))  # input rows per block, with halo
        group = max(1, SSIM_BLOCK_BYTES // (5 * 8 * W * min(H, rows)))  # images per block
    for n0 in range(0, N, group):
        for r0 in range(0, H - k + 1, rows - k + 1):
            xb, yb = x[n0: n0 + group, r0: r0 + rows], y[n0: n0 + group, r0: r0 + rows]
            stats = _valid_filter(torch.stack([xb, yb, xb * xb, yb * yb, xb * yb]), taps)
            mu_x, mu_y, e_xx, e_yy, e_xy = stats  # local E[x], E[y], E[x^2], E[y^2], E[xy]
            mu_xy = mu_x * mu_y
            mu_xx, mu_yy = mu_x.square_(), mu_y.square_()
            cov_xy = e_xy.sub_(mu_xy)  # population (co)variances, as in the paper
            var_sum = e_xx.sub_(mu_xx).add_(e_yy.sub_(mu_yy))
            numerator = (2 * mu_xy + c1).mul_(cov_xy.mul_(2).add_(c2))
            denominator = (mu_xx + mu_yy + c1).mul_(var_sum.add_(c2))
            out[n0: n0 + group, r0: r0 + numerator.shape[-2]] = numerator.div_(denominator)
    return out


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float, reduction: str = "none",
         return_map: bool = False) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004) per image, averaged over channels.

    ``SSIM = (2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2))``
    with local statistics under an 11x11 Gaussian window (sigma 1.5), averaged over the valid
    region; equal to scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=R)`` (to float64 rounding). A metric, not a loss: the
    result carries no gradient.

    Args:
        x, y: ``(B, C, H, W)`` images, same shape and dtype, ``H, W >= 11``.
        data_range: the width of the value range (1.0 for images in [0, 1]).
        reduction: ``"none"`` (``(B,)``) or ``"mean"``.
        return_map: also return the SSIM map ``(B, C, H - 10, W - 10)``.

    Returns:
        float64 tensor of SSIM values in ``[-1, 1]`` (1 for identical images), and the map if
        asked.

    Example:
        >>> _ = torch.manual_seed(0); x = torch.rand(2, 1, 16, 16)
        >>> ssim(x, x, data_range=1.0)
        tensor([1., 1.], dtype=torch.float64)
        >>> bool(ssim(x, (x + 0.2 * torch.randn_like(x)).clamp(0, 1), 1.0)[0] < 0.9)
        True
    """
    data_range = _check_pair(x, y, data_range)
    B, C, H, W = x.shape
    if H < SSIM_WINDOW or W < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels (its "
                         f"window), got {H}x{W}")
    x = x.detach().double().reshape(B * C, H, W)
    y = y.detach().double().reshape(B * C, H, W)
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    ssim_map = _ssim_map(x, y, c1, c2).view(B, C, H - SSIM_WINDOW + 1, W - SSIM_WINDOW + 1)
    value = _reduce(ssim_map.mean((1, 2, 3)), reduction)
    return (value, ssim_map) if return_map else value


class PSNR(MeanMetric):
    """Mean per-image PSNR over all batches seen (constant memory).

    Example:
        >>> m = PSNR(data_range=1.0); x = torch.zeros(1, 1, 4, 4)
        >>> m.update(x, x + 0.1); m.update(x, x + 0.01); round(m.compute(), 6)
        30.0
    """

    higher_is_better = True

    def __init__(self, data_range: float):
        self.data_range = check_positive("data_range", data_range)
        super().__init__()

    def _values(self, x, y):
        value = psnr(x, y, self.data_range)
        if bool(torch.isinf(value).any()):
            raise ValueError("an image equals its reference (PSNR is infinite); the mean would be "
                             "infinite")
        return value


class SSIM(MeanMetric):
    """Mean per-image SSIM over all batches seen (constant memory)."""

    higher_is_better = True

    def __init__(self, data_range: float):
        self.data_range = check_positive("data_range", data_range)
        super().__init__()

    def _values(self, x, y):
        return ssim(x, y, self.data_range)
