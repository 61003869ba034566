"""cnnrun.figures: image grids, the misclassified-samples grid, figures as image arrays and histograms, against
independent reconstructions (min-max scaling, nearest enlargement and grid positions written out here, numpy's
histogram)."""
import ast
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnrun import figures


def scaled(values: torch.Tensor) -> np.ndarray:
    """Min-max scaled to [0, 255], as the grids show each tile."""
    v = values.double()
    return ((v - v.min()) / (v.max() - v.min()) * 255).numpy()


def tile(image: np.ndarray, index: int, nrow: int, size: int, pad: int = 2) -> np.ndarray:
    """Tile ``index`` of a torchvision grid (tiles of ``size`` px, ``pad`` px apart), grey channel."""
    r, c = divmod(index, nrow)
    top, left = pad + r * (size + pad), pad + c * (size + pad)
    return image[top:top + size, left:left + size, 0].astype(np.float64)


def block_centres(t: np.ndarray, factor: int) -> np.ndarray:
    """One pixel per enlarged cell of a tile (nearest enlargement by ``factor``)."""
    return t[factor // 2::factor, factor // 2::factor]


def test_rendering_of_1d_and_3d_layers():
    torch.manual_seed(0)
    w1 = torch.randn(4, 2, 5)  # Conv1d: a band per (filter, input channel), a column block per tap
    image = (figures.filter_grid(w1)[0] * 255).numpy()
    band, col = 8, math.ceil(2 * figures.MIN_TILE_PX / 5)
    assert image.shape == (4 * 2 * band, 5 * col)  # a single image: no grid padding
    shown = image[band // 2::band, col // 2::col]
    assert np.abs(shown - scaled(w1.reshape(8, 5))).max() < 0.01
    w3 = torch.randn(2, 1, 3, 5, 5)  # Conv3d: a row per filter, a tile per depth slice
    image = (figures.filter_grid(w3)[0] * 255).numpy()
    factor = math.ceil(figures.MIN_TILE_PX / 5)
    size = 5 * factor
    assert image.shape == (2 * (size + 2) + 2, 3 * (size + 2) + 2)
    shown = block_centres(tile(image[..., None], 1 * 3 + 2, 3, size), factor)  # filter 1, depth slice 2
    assert np.abs(shown - scaled(w3[1, 0, 2])).max() < 0.01
    assert figures.map_grid(torch.randn(3, 40)).shape[0] == 3  # 1D maps: one band image
    assert figures.map_grid(torch.randn(5, 4, 9, 9)).shape == figures.map_grid(torch.randn(5, 9, 9)).shape  # 3D


def test_a_filter_grid_wraps_its_rows_and_leaves_empty_cells_white():
    """Seven 2D filters of one input channel: rows of ceil(sqrt(7)) = 3 tiles, the last row with one tile."""
    torch.manual_seed(1)
    w = torch.randn(7, 1, 4, 4)
    image = (figures.filter_grid(w).permute(1, 2, 0) * 255).numpy()
    factor = figures.MIN_TILE_PX // 4
    size = 4 * factor
    assert image.shape == (3 * (size + 2) + 2, 3 * (size + 2) + 2, 3)
    for i in range(7):
        assert np.abs(block_centres(tile(image, i, 3, size), factor) - scaled(w[i, 0])).max() < 0.01, i
    assert (tile(image, 7, 3, size) == 255).all() and (tile(image, 8, 3, size) == 255).all()
    assert (image[:2] == 255).all() and (image[:, size + 2:size + 4] == 255).all()  # the white separators


def grid_of(fig) -> np.ndarray:
    """The image a one-axes figure shows, (H, W, 3) in [0, 1]."""
    (ax,) = fig.axes
    return np.asarray(ax.images[0].get_array())


@pytest.mark.parametrize("n", [7, 1])
def test_misclassified_grid_has_room_for_each_label(n):
    """Rows of 5 samples on white, each with 26 white pixels above it for its text 'true y / pred p'."""
    torch.manual_seed(2)
    x = torch.randn(n, 1, 28, 28)
    y, pred = torch.arange(n), (torch.arange(n) + 1) % 10
    fig = figures.misclassified_figure(x, y, pred)
    grid = grid_of(fig)
    factor, pad, label = math.ceil(64 / 28), 4, 26
    size, cols = 28 * factor, min(5, n)
    rows = math.ceil(n / cols)
    assert grid.shape == (rows * (size + label + pad) + pad, cols * (size + pad) + pad, 3)
    texts = fig.axes[0].texts
    assert [t.get_text() for t in texts] == [f"true {i}\npred {(i + 1) % 10}" for i in range(n)]
    painted = np.zeros(grid.shape[:2], dtype=bool)
    for i in range(n):
        r, c = divmod(i, cols)
        top, left = r * (size + label + pad) + label + pad, c * (size + pad) + pad
        shown = grid[top:top + size, left:left + size, 0] * 255
        assert np.abs(block_centres(shown, factor) - scaled(x[i, 0])).max() < 0.01, i
        painted[top:top + size, left:left + size] = True
        tx, ty = texts[i].get_position()
        assert left <= tx < left + size and top - label <= ty <= top  # above its own sample, in the white room
    assert (grid[~painted] == 1).all()  # everything else is white


def test_figure_image_is_the_rendered_canvas():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 1), dpi=50, facecolor=(1.0, 0.0, 0.0))
    image = figures.figure_image(fig)
    assert image.shape == (3, 50, 100) and image.dtype == np.uint8 and image.flags["C_CONTIGUOUS"]
    assert (image[0] == 255).all() and (image[1:] == 0).all()


def test_confusion_markdown_is_the_counts_table():
    matrix = torch.tensor([[5, 1], [0, 7]])
    assert figures.confusion_markdown(matrix).splitlines() == [
        "| true \\ predicted | 0 | 1 |", "|---|---:|---:|", "| 0 | 5 | 1 |", "| 1 | 0 | 7 |"]


def test_histogram_bins_match_numpy():
    class Capture:
        def add_histogram_raw(self, tag, **kwargs):
            self.kwargs = kwargs

    torch.manual_seed(0)
    values = torch.randn(5000) * 3 + 1
    writer = Capture()
    figures.add_histogram(writer, "w", torch.cat([values, torch.tensor([float("nan"), float("inf")])]), 7)
    k = writer.kwargs
    counts, edges = np.histogram(values.numpy(), bins=figures.HISTOGRAM_BINS)
    assert k["num"] == 5000 and k["global_step"] == 7  # the non-finite values are left out
    assert np.array_equal(np.array(k["bucket_counts"]), counts)
    assert np.allclose(k["bucket_limits"], edges[1:], rtol=0, atol=1e-5)
    assert k["min"] == pytest.approx(values.min().item()) and k["max"] == pytest.approx(values.max().item())
    assert k["sum"] == pytest.approx(values.double().sum().item(), rel=1e-5)
    assert k["sum_squares"] == pytest.approx((values.double() ** 2).sum().item(), rel=1e-5)
    figures.add_histogram(writer, "c", torch.full((4,), 2.5), 0)  # a constant: one bucket
    assert writer.kwargs["bucket_counts"] == [4.0] and writer.kwargs["bucket_limits"] == [2.5]


def test_figures_import_no_other_cnnrun_module_and_load_plotting_libraries_late():
    """Low level: no cnnrun import anywhere in the module; at import time only the standard library, numpy and
    torch (matplotlib, scikit-learn and torchvision load inside the functions that draw)."""
    tree = ast.parse(Path(figures.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {name for name in imported if name.split(".")[0] == "cnnrun"}
    top = {alias.name for node in tree.body if isinstance(node, ast.Import) for alias in node.names}
    top |= {node.module for node in tree.body if isinstance(node, ast.ImportFrom)}
    assert top == {"__future__", "math", "numpy", "torch"}
