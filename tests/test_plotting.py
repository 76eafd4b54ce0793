"""coursekit.plotting: grids put each image where it belongs; figures are labelled."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch

from coursekit.plotting import make_grid, plot_curves, save_figure, show_images


def test_grid_places_images_row_by_row():
    images = torch.arange(6, dtype=torch.float32).reshape(6, 1, 1, 1) / 10  # one pixel each
    grid = make_grid(images, nrow=3, padding=1, pad_value=1.0)
    assert grid.shape == (5, 7)
    np.testing.assert_allclose(grid[1, [1, 3, 5]], [0.0, 0.1, 0.2], atol=1e-7)
    np.testing.assert_allclose(grid[3, [1, 3, 5]], [0.3, 0.4, 0.5], atol=1e-7)
    assert grid[0].min() == 1.0  # padding row


def test_grid_colour_and_clipping():
    grid = make_grid(torch.full((2, 3, 4, 4), 2.0), nrow=2)
    assert grid.shape == (6, 11, 3) and grid.max() == 1.0


@pytest.mark.parametrize("bad", [torch.zeros(2, 2, 4, 4), torch.zeros(4, 4), torch.zeros(0, 1, 4, 4)])
def test_grid_rejects_bad_shapes(bad):
    with pytest.raises(ValueError, match="images|empty"):
        make_grid(bad)


def test_figures_have_titles_and_labels(tmp_path):
    fig = plot_curves({"a": [3, 2, 1], "b": [1, 1, 1]}, xlabel="epoch", ylabel="loss", title="t")
    ax = fig.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("epoch", "loss", "t")
    assert len(ax.get_lines()) == 2
    save_figure(fig, tmp_path / "sub" / "curve.png")
    assert (tmp_path / "sub" / "curve.png").stat().st_size > 1000
    fig = show_images(torch.rand(4, 1, 8, 8), title="samples")
    assert fig.axes[0].get_title() == "samples"
    with pytest.raises(ValueError, match="has 3 values but x has 2"):
        plot_curves({"a": [1, 2, 3]}, xlabel="x", ylabel="y", title="t", x=[1, 2])
