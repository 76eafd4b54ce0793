"""Plotting helpers the chapters share: image grids and curves (every chapter).

Functions return the matplotlib ``Figure`` (or an array) and never change global settings, so a
chapter decides how to show or save what it gets.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from coursekit.utils import to_numpy

__all__ = ["make_grid", "show_images", "plot_curves", "save_figure"]


def make_grid(images: torch.Tensor | np.ndarray, nrow: int | None = None, padding: int = 1,
              pad_value: float = 1.0) -> np.ndarray:
    """Tile a batch of images into one array, row by row.

    Args:
        images: ``(B, C, H, W)`` or ``(B, H, W)`` with values in ``[0, 1]`` and ``C`` 1 or 3.
        nrow: images per row (default: the ceiling of the square root of ``B``).
        padding: pixels between images.
        pad_value: grey level of the padding.

    Returns:
        ``(rows, cols)`` for grey images or ``(rows, cols, 3)`` for colour, float in ``[0, 1]``.

    Example:
        >>> make_grid(torch.zeros(6, 1, 8, 8), nrow=3, padding=1).shape
        (19, 28)
    """
    array = to_numpy(images.detach().float() if torch.is_tensor(images) else images)
    if array.ndim == 3:
        array = array[:, None]
    if array.ndim != 4 or array.shape[1] not in (1, 3):
        raise ValueError(f"images must be (B, C, H, W) with C in (1, 3) or (B, H, W), got shape "
                         f"{tuple(array.shape)}")
    b, c, h, w = array.shape
    if b == 0:
        raise ValueError("make_grid needs at least one image, got an empty batch")
    nrow = nrow or math.ceil(math.sqrt(b))
    ncol_rows = math.ceil(b / nrow)
    grid = np.full((c, ncol_rows * (h + padding) + padding, nrow * (w + padding) + padding),
                   pad_value, dtype=np.float32)
    for i in range(b):
        r, k = divmod(i, nrow)
        top, left = padding + r * (h + padding), padding + k * (w + padding)
        grid[:, top:top + h, left:left + w] = array[i]
    grid = np.clip(grid, 0.0, 1.0)
    return grid[0] if c == 1 else grid.transpose(1, 2, 0)


def show_images(images, nrow: int | None = None, title: str | None = None, ax=None,
                figsize: tuple[float, float] = (4, 4)):
    """Show a batch of images as one grid; returns the figure.

    Args:
        images: as for ``make_grid``.
        nrow: images per row.
        title: the axes title.
        ax: draw into these axes instead of a new figure.
        figsize: size of a new figure in inches.
    """
    import matplotlib.pyplot as plt

    grid = make_grid(images, nrow=nrow)
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
    else:
        fig = ax.figure
    ax.imshow(grid, cmap="gray" if grid.ndim == 2 else None, vmin=0.0, vmax=1.0,
              interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return fig


LINE_STYLES = ("-", "--", ":", "-.")


def plot_curves(curves: Mapping[str, Sequence[float]], xlabel: str, ylabel: str, title: str,
                x: Sequence[float] | None = None, ax=None, logx: bool = False,
                figsize: tuple[float, float] = (5, 3.5), marker: str | None = None):
    """Plot named curves that share an x axis (loss curves, metric-versus-N curves).

    Args:
        curves: ``{label: values}``.
        xlabel, ylabel, title: axis labels and title (required: every figure is labelled).
        x: shared x values (default ``0, 1, 2, ...``).
        ax: draw into these axes instead of a new figure.
        logx: logarithmic x axis.
        figsize: size of a new figure in inches.
        marker: a matplotlib marker for the points.

    Curves differ in line style as well as colour (solid, dashed, dotted, dash-dot, then again).
    """
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
    else:
        fig = ax.figure
    for index, (label, values) in enumerate(curves.items()):
        values = np.asarray(values, dtype=float)
        xs = np.arange(len(values)) if x is None else np.asarray(x, dtype=float)
        if len(xs) != len(values):
            raise ValueError(f"curve {label!r} has {len(values)} values but x has {len(xs)}")
        # line styles as well as colours: a reader need not tell colours apart
        ax.plot(xs, values, label=label, marker=marker,
                linestyle=LINE_STYLES[index % len(LINE_STYLES)])
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if len(curves) > 1:
        ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def save_figure(fig, path) -> None:
    """Save a figure as PNG (creating the folder) and close it."""
    import matplotlib.pyplot as plt
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
