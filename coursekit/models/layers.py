"""Building blocks shared by the GANs and VAEs: shape checks, conv stacks for any image size, and
MADE's masked linear layer (Chapter 4).

The convolutional stacks halve (or double) the image side twice with 4x4 kernels, stride 2 and
padding 1, so one design serves 8x8 digits (8 -> 4 -> 2), 28x28 MNIST (28 -> 14 -> 7), 25x25
faces (25 -> 12 -> 6) and RGB crops; the upsampling side builds ``4 * ceil(side / 4)`` pixels and
crops to the requested size.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["check_batch", "check_choice", "down_side", "ConvEncoder", "ConvDecoder", "MaskedLinear", "made_masks"]


def check_batch(x: torch.Tensor, data_shape: tuple[int, ...], who: str) -> None:
    """Raise a ``ValueError`` naming both shapes unless ``x`` is ``(B, *data_shape)``."""
    if x.ndim != len(data_shape) + 1 or tuple(x.shape[1:]) != tuple(data_shape):
        raise ValueError(f"{who} expects a batch of shape (B, {', '.join(map(str, data_shape))}), "
                         f"got {tuple(x.shape)}")


def check_choice(what: str, value, choices) -> None:
    """Raise ``ValueError("unknown WHAT 'value'; valid: [...]")`` unless ``value`` is a choice.

    Example:
        >>> check_choice("GAN arch", "resnet", ("mlp", "dcgan"))
        Traceback (most recent call last):
        ...
        ValueError: unknown GAN arch 'resnet'; valid: ['mlp', 'dcgan']
    """
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; valid: {list(choices)}")


def down_side(side: int, times: int = 2) -> int:
    """The side after ``times`` convolutions with kernel 4, stride 2, padding 1: floor(side / 2)."""
    for _ in range(times):
        side = side // 2
    return side


def _check_image_shape(data_shape: tuple[int, ...], who: str) -> tuple[int, int, int]:
    if len(data_shape) != 3 or min(data_shape[1:]) < 4:
        raise ValueError(f"{who} needs images (C, H, W) with H, W >= 4, got data_shape {data_shape}")
    return tuple(data_shape)


class ConvEncoder(nn.Module):
    """``(B, C, H, W) -> (B, out_features)``: two stride-2 convolutions and a linear layer.

    ``norm`` wraps each layer (``spectral_norm`` for a discriminator, identity otherwise).
    """

    def __init__(self, data_shape: tuple[int, ...], channels: int, out_features: int,
                 norm=lambda layer: layer):
        super().__init__()
        c, h, w = _check_image_shape(data_shape, "a convolutional encoder")
        self.net = nn.Sequential(
            norm(nn.Conv2d(c, channels, 4, 2, 1)), nn.LeakyReLU(0.2),            # (B, ch, H/2, W/2)
            norm(nn.Conv2d(channels, 2 * channels, 4, 2, 1)), nn.LeakyReLU(0.2),  # (B, 2ch, H/4, W/4)
            nn.Flatten(),
            norm(nn.Linear(2 * channels * down_side(h) * down_side(w), out_features)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConvDecoder(nn.Module):
    """``(B, in_features) -> (B, out_channels, H, W)``: DCGAN's upsampling stack (Radford et al.).

    A linear layer makes a ``(2 * channels, ceil(H/4), ceil(W/4))`` map, two transposed
    convolutions double it twice, and the result is cropped to ``H x W``.
    """

    def __init__(self, in_features: int, data_shape: tuple[int, ...], channels: int,
                 out_channels: int):
        super().__init__()
        _, h, w = _check_image_shape(data_shape, "a convolutional decoder")
        self.h, self.w = h, w
        self.h0, self.w0 = math.ceil(h / 4), math.ceil(w / 4)
        self.channels = channels
        self.project = nn.Sequential(
            nn.Linear(in_features, 2 * channels * self.h0 * self.w0),
            nn.BatchNorm1d(2 * channels * self.h0 * self.w0), nn.ReLU())
        self.net = nn.Sequential(
            nn.ConvTranspose2d(2 * channels, channels, 4, 2, 1), nn.BatchNorm2d(channels),
            nn.ReLU(),                                                      # (B, ch, 2h0, 2w0)
            nn.ConvTranspose2d(channels, channels, 4, 2, 1), nn.ReLU(),     # (B, ch, 4h0, 4w0)
            nn.Conv2d(channels, out_channels, 3, 1, 1),                     # (B, out, 4h0, 4w0)
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        x = self.project(h).view(-1, 2 * self.channels, self.h0, self.w0)  # (B, 2ch, h0, w0)
        return self.net(x)[:, :, :self.h, :self.w]                          # (B, out, H, W)


def made_masks(num_inputs: int, hidden: list[int], out_per_input: int,
               in_per_input: int = 1) -> list[torch.Tensor]:
    """Connectivity masks of MADE (Germain et al. 2015) for the natural (raster) order.

    Input ``d`` (degree ``d + 1``) may influence output ``d'`` only if ``d < d'``. Hidden units
    get degrees ``1 .. num_inputs - 1`` in turn (deterministic, so the same config gives the same
    model). Each output pixel has ``out_per_input`` units (one logit per grey level), and each input
pixel ``in_per_input`` units (its one-hot code).

    Returns:
        One ``(out_features, in_features)`` float mask per layer.
    """
    degrees = [torch.arange(1, num_inputs + 1).repeat_interleave(in_per_input)]
    for size in hidden:
        degrees.append(torch.arange(size) % max(num_inputs - 1, 1) + 1)
    masks = [(d_out[:, None] >= d_in[None, :]).float() for d_in, d_out in zip(degrees, degrees[1:])]
    out_degrees = torch.arange(1, num_inputs + 1).repeat_interleave(out_per_input)
    masks.append((out_degrees[:, None] > degrees[-1][None, :]).float())
    return masks


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed 0/1 mask (a buffer)."""

    def __init__(self, mask: torch.Tensor, bias: bool = True):
        super().__init__(mask.shape[1], mask.shape[0], bias=bias)
        self.register_buffer("mask", mask.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight * self.mask, self.bias)
