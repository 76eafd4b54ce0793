"""Autoregressive image models, whose likelihood is exact (Chapter 11):

    log p(x) = sum_i log p(x_i | x_<i),   pixels in raster order.

``Autoregressive`` is Chapter 4's autoregressive VAE decoder without the latent: the same causal
1-D convolutions over the pixels in raster order (``arch="causal_conv"``, the autoregressive model
of Tomczak's intro_dgm) or the same masked MLP (``arch="made"``, Germain et al. 2015), each
conditioned on a constant instead of ``z``. One network call scores every pixel of an image at
once (teacher forcing); sampling takes one call per pixel.

``MaskedConv2d`` is PixelCNN's masked convolution (van den Oord et al. 2016), kept for Chapter 11's
picture of its blind spot: stacked 3x3 convolutions masked to the pixels above and to the left
never see the pixels above and to the right of the current one. The raster-order causal 1-D
convolution has no blind spot (each output sees a contiguous run of the preceding pixels), and the
gated PixelCNN fixes the 2-D one with a second, vertical stack.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from coursekit.data.levels import batch_levels, check_levels
from coursekit.losses import log_categorical
from coursekit.models.base import TrainableModel
from coursekit.models.layers import check_batch
from coursekit.models.vae import CausalConvDecoder, MADEDecoder
from coursekit.utils import eval_mode

__all__ = ["AutoregressiveConfig", "Autoregressive", "MaskedConv2d", "ARCHS", "histogram_nats"]

ARCHS = ("causal_conv", "made")


@dataclass
class AutoregressiveConfig:
    data_shape: tuple[int, ...] = (1, 8, 8)  # one image (C, H, W), or a vector (D,)
    num_levels: int = 17           # values of each pixel (digits: 0..16; binary images: 2)
    arch: str = "causal_conv"      # "causal_conv" (shared weights) or "made" (masked MLP)
    channels: int = 64             # causal_conv: feature maps of each causal convolution
    kernel_size: int = 7           # causal_conv: how many preceding pixels one layer sees
    hidden: int = 256              # made: width of the two masked hidden layers
    dropout: float = 0.1           # dropout between the hidden layers (a regulariser)

    def __post_init__(self):
        self.data_shape = tuple(int(s) for s in self.data_shape)
        if self.arch not in ARCHS:
            raise ValueError(f"unknown arch {self.arch!r}; valid: {list(ARCHS)}")
        if self.num_levels < 2:
            raise ValueError(f"num_levels must be >= 2, got {self.num_levels}")
        if min(self.data_shape, default=0) < 1 or math.prod(self.data_shape) < 2:
            raise ValueError(f"data_shape must hold at least 2 pixels, got {self.data_shape}")
        if self.channels < 1 or self.hidden < 1 or self.kernel_size < 1:
            raise ValueError(f"channels, hidden and kernel_size must be positive, got "
                             f"{self.channels}, {self.hidden}, {self.kernel_size}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")


class Autoregressive(TrainableModel):
    """``p(x) = prod_i Categorical(x_i; softmax(logits_i(x_<i)))`` over ``num_levels`` values.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> model = Autoregressive(AutoregressiveConfig(data_shape=(1, 2, 2), num_levels=2,
        ...                                             channels=4, dropout=0.0))
        >>> all_images = torch.tensor([[(k >> i) & 1 for i in range(4)] for k in range(16)])
        >>> levels = all_images.view(16, 1, 2, 2)
        >>> total = model.log_prob({"levels": levels}).exp().sum()   # over all 2^4 images
        >>> round(total.item(), 6)
        1.0
    """
    config_class = AutoregressiveConfig
    PHASES = ("autoregressive",)

    def __init__(self, config: AutoregressiveConfig | None = None):
        super().__init__()
        self.config = c = config or AutoregressiveConfig()
        self.num_pixels = math.prod(c.data_shape)
        # Chapter 4's decoders, conditioned on a constant 1 instead of z: a learned bias
        if c.arch == "causal_conv":
            self.net = CausalConvDecoder(self.num_pixels, 1, c.channels, c.num_levels,
                                         kernel_size=c.kernel_size, dropout=c.dropout)
        else:
            self.net = MADEDecoder(self.num_pixels, 1, c.hidden, c.num_levels,
                                   in_levels=c.num_levels, dropout=c.dropout)

    def logits(self, levels: torch.Tensor) -> torch.Tensor:
        """``(B, L, *data_shape)`` logits; those of pixel ``i`` depend on pixels ``< i`` only."""
        c = self.config
        check_batch(levels, c.data_shape, "the autoregressive model")
        dtype = next(self.parameters()).dtype
        x_flat = levels.flatten(1).to(dtype) / (c.num_levels - 1)          # (B, D) in [0, 1]
        one = x_flat.new_ones(x_flat.shape[0], 1)                           # (B, 1)
        out = self.net(x_flat, one)                                         # (B, D, L)
        return out.transpose(1, 2).reshape(levels.shape[0], c.num_levels, *c.data_shape)

    def _levels(self, batch: dict) -> torch.Tensor:
        return batch_levels(batch, self.config.num_levels)

    def log_prob(self, batch: dict, check_range: bool = True) -> torch.Tensor:
        """``log p(x)`` per example ``(B,)``, in nats: exact, one network call."""
        levels = self._levels(batch)
        return log_categorical(levels, self.logits(levels), check_range=check_range)

    # ---------------------------------------------------------------- the engine's protocol
    def objective(self, batch: dict, step: int) -> tuple[torch.Tensor, dict]:
        nats = -self.log_prob(batch, check_range=False)
        return nats.mean(), {"nats": nats.detach().mean()}

    def evaluate(self, batch: dict) -> dict[str, torch.Tensor]:
        """Per-example ``nats`` = ``-log p(x)``."""
        return {"nats": -self.log_prob(batch, check_range=False)}

    def check_data(self, data: dict) -> None:
        """Integer ``levels`` (or ``x`` = levels / (L - 1)) in ``0 .. L-1``."""
        check_levels(self._levels(data), self.config.num_levels)

    @torch.no_grad()
    def sample(self, n: int, *, labels: torch.Tensor | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` images in ``[0, 1]``, drawn pixel by pixel in raster order: pixel ``i`` from
        ``p(x_i | x_<i)`` given the pixels already drawn, one network call each."""
        if labels is not None:
            raise ValueError("this autoregressive model is unconditional: it takes no labels")
        c = self.config
        device = next(self.parameters()).device
        levels = torch.zeros(n, *c.data_shape, dtype=torch.long, device=device)
        flat = levels.view(n, -1)                                           # (n, D), a view
        with eval_mode(self):
            for i in range(self.num_pixels):
                logits = self.logits(levels).reshape(n, c.num_levels, -1)[:, :, i]   # (n, L)
                flat[:, i] = torch.multinomial(logits.softmax(dim=1), 1,
                                               generator=generator).squeeze(1)
        return levels.float() / (c.num_levels - 1)


def histogram_nats(fit_levels: torch.Tensor, score_levels: torch.Tensor,
                   num_levels: int) -> torch.Tensor:
    """``-log p(x)`` per image of independent pixels, each with its own histogram of levels
    (add-one counts on ``fit_levels``): the chain rule with an empty context, the baseline every
    model of Chapters 4, 9 and 11 must beat.

    Example:
        >>> fit = torch.tensor([[0, 1], [0, 1], [0, 0]])      # pixel 0 always 0
        >>> nats = histogram_nats(fit, torch.tensor([[0, 1]]), num_levels=2)
        >>> round(nats.item(), 4)         # -log(4/5) - log(3/5), add-one counts
        0.734
    """
    if fit_levels.shape[1:] != score_levels.shape[1:]:
        raise ValueError(f"fit_levels {tuple(fit_levels.shape)} and score_levels "
                         f"{tuple(score_levels.shape)} must have the same image shape")
    flat = fit_levels.flatten(1)                                            # (N, D)
    counts = torch.stack([(flat == k).sum(0) for k in range(num_levels)]).double() + 1  # (L, D)
    logits = counts.log().T.reshape(1, *score_levels.shape[1:], num_levels).movedim(-1, 1)
    return -log_categorical(score_levels, logits.expand(len(score_levels), *logits.shape[1:]))


class MaskedConv2d(nn.Conv2d):
    """PixelCNN's masked convolution (van den Oord et al. 2016): the kernel sees the rows above
    and, in the centre row, the pixels to the left; mask ``"A"`` (the first layer) hides the
    centre pixel too, mask ``"B"`` (later layers) lets it through.

    Example:
        >>> MaskedConv2d(1, 1, 3, mask_type="A").mask[0, 0].int().tolist()
        [[1, 1, 1], [1, 0, 0], [0, 0, 0]]
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 mask_type: str = "B"):
        if mask_type not in ("A", "B"):
            raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        k = kernel_size // 2
        mask = torch.ones(kernel_size, kernel_size)
        mask[k, k + (mask_type == "B"):] = 0                                 # centre row, right
        mask[k + 1:] = 0                                                     # rows below
        self.register_buffer("mask", mask.expand_as(self.weight).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.weight * self.mask, self.bias)
