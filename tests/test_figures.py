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


def test_1d_filters_and_maps_are_one_near_square_heatmap():
    """A band per (filter, input channel), a column per tap, each enlarged by whole pixels: the image is about as tall
    as wide (Conv1d weights (4, 2, 5): 8 bands of 5 taps), and a single signal stays one band."""
    torch.manual_seed(0)
    w1 = torch.randn(4, 2, 5)
    image = (figures.filter_grid(w1)[0] * 255).numpy()
    height, width = image.shape
    assert height % 8 == 0 and width % 5 == 0  # whole-pixel bands and columns, no grid padding
    band, col = height // 8, width // 5
    assert width >= 2 * figures.MIN_TILE_PX and 0.8 <= height / width <= 1.25
    assert np.abs(image[band // 2::band, col // 2::col] - scaled(w1.reshape(8, 5))).max() < 0.01
    signal = torch.randn(1, 40)
    strip = (figures.map_grid(signal)[0] * 255).numpy()
    col = strip.shape[1] // 40
    assert strip.shape[1] % 40 == 0 and np.abs(strip[0, col // 2::col] - scaled(signal[0])).max() < 0.01
    assert figures.map_grid(torch.randn(5, 4, 9, 9)).shape == figures.map_grid(torch.randn(5, 9, 9)).shape  # 3D


def grouped_origin(group: int, k: int, per_row: int, group_size: int, size: int) -> tuple[int, int]:
    """The top left pixel of tile ``k`` of group ``group`` in a grid of groups: each group a row of ``group_size``
    tiles (``size`` px, GRID_PAD apart and around), ``per_row`` groups per row, GROUP_PAD between and around them."""
    pad, gap = figures.GRID_PAD, figures.GROUP_PAD
    group_h, group_w = size + 2 * pad, group_size * (size + pad) + pad
    r, c = divmod(group, per_row)
    return gap + r * (group_h + gap) + pad, gap + c * (group_w + gap) + pad + k * (size + pad)


def test_3d_filters_keep_each_filters_depth_slices_together_and_wrap_the_filters():
    """Conv3d weights (10, 1, 3, 5, 5): a group of 3 depth slices per filter, the 10 groups wrapped into rows (not
    one column of 10 groups), wider gaps between groups than between the slices of one group; the rest white."""
    torch.manual_seed(3)
    w3 = torch.randn(10, 1, 3, 5, 5)
    image = (figures.filter_grid(w3).permute(1, 2, 0) * 255).numpy()
    factor = math.ceil(figures.MIN_TILE_PX / 5)
    size = 5 * factor
    group_w = 3 * (size + figures.GRID_PAD) + figures.GRID_PAD
    per_row = (image.shape[1] - figures.GROUP_PAD) // (group_w + figures.GROUP_PAD)
    assert 1 < per_row < 10 and image.shape[1] == figures.GROUP_PAD + per_row * (group_w + figures.GROUP_PAD)
    painted = np.zeros(image.shape[:2], dtype=bool)
    for f in range(10):
        for d in range(3):
            top, left = grouped_origin(f, d, per_row, 3, size)
            shown = image[top:top + size, left:left + size, 0].astype(np.float64)
            assert np.abs(block_centres(shown, factor) - scaled(w3[f, 0, d])).max() < 0.01, (f, d)
            painted[top:top + size, left:left + size] = True
    assert (image[~painted] == 255).all()


@pytest.mark.parametrize("what,render,shape", [
    ("LeNet-5's first filters", figures.filter_grid, (6, 1, 5, 5)),
    ("Inception's first filters (RGB)", figures.filter_grid, (64, 3, 3, 3)),
    ("C3D's first filters", figures.filter_grid, (32, 1, 3, 3, 3)),
    ("cnn1d's first filters", figures.filter_grid, (32, 1, 5)),
    ("filters of 2 input channels", figures.filter_grid, (16, 2, 5, 5)),
    ("32 feature maps", figures.map_grid, (32, 28, 28)),
    ("32 maps of a 1D signal", figures.map_grid, (32, 40)),
    ("32 maps of a clip", figures.map_grid, (32, 8, 16, 16)),
])
def test_grids_are_near_square_to_fit_a_card(what, render, shape):
    """TensorBoard scales an image to its card's width: a grid about as tall as wide (not a long row or column)."""
    height, width = render(torch.randn(shape)).shape[1:]
    assert 0.6 <= height / width <= 1.25, what


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
    """Rows of 5 samples on white, each with 26 white pixels above it for its two lines of text, 'true y' over
    'pred p' (matplotlib's own glyph outlines of those texts), drawn in that room and nowhere else."""
    from matplotlib.textpath import TextPath

    torch.manual_seed(2)
    x = torch.randn(n, 1, 28, 28)
    y, pred = torch.arange(n), (torch.arange(n) + 1) % 10
    fig = figures.misclassified_figure(x, y, pred)
    grid = grid_of(fig)
    factor, pad, label = math.ceil(64 / 28), 4, 26
    size, cols = 28 * factor, min(5, n)
    rows = math.ceil(n / cols)
    assert grid.shape == (rows * (size + label + pad) + pad, cols * (size + pad) + pad, 3)
    (labels,) = fig.axes[0].collections
    lines = [text for i in range(n) for text in (f"true {i}", f"pred {(i + 1) % 10}")]
    assert len(labels.get_paths()) == len(lines)
    for path, text in zip(labels.get_paths(), lines):
        assert np.allclose(path.vertices, TextPath((0, 0), text, size=8).vertices), text
    offsets = labels.get_offsets()
    drawn = figures.figure_image(fig).transpose(1, 2, 0).astype(np.float64)
    ink = np.abs(drawn - grid * 255).max(axis=2) > 60  # what the figure adds to the grid: the labels
    painted, rooms = np.zeros(grid.shape[:2], dtype=bool), np.zeros(grid.shape[:2], dtype=bool)
    for i in range(n):
        r, c = divmod(i, cols)
        top, left = r * (size + label + pad) + label + pad, c * (size + pad) + pad
        shown = grid[top:top + size, left:left + size, 0] * 255
        assert np.abs(block_centres(shown, factor) - scaled(x[i, 0])).max() < 0.01, i
        painted[top:top + size, left:left + size] = True
        rooms[top - label:top, left:left + size] = True
        (tx, ty_true), (_, ty_pred) = offsets[2 * i], offsets[2 * i + 1]
        assert left <= tx < left + size and top - label <= ty_true < ty_pred <= top  # 'true' over 'pred', above it
        room = ink[top - label:top, left:left + size]
        ink_rows = np.nonzero(room.any(axis=1))[0]
        assert room.any() and ink_rows[-1] - ink_rows[0] >= 16, i  # two lines of text of 8 points at 100 dpi
    assert (grid[~painted] == 1).all()  # everything else is white
    assert not ink[~rooms].any()  # the labels stay in their rooms


def test_figure_image_is_the_rendered_canvas():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 1), dpi=50, facecolor=(1.0, 0.0, 0.0))
    image = figures.figure_image(fig)
    assert image.shape == (3, 50, 100) and image.dtype == np.uint8 and image.flags["C_CONTIGUOUS"]
    assert (image[0] == 255).all() and (image[1:] == 0).all()


# TensorBoard 2.21 shows an image scaled to its card, about 340 px wide (Images tab, 1400 px wide window): what is
# legible there is a text's height relative to the image's width.
CARD_PX = 340


def on_card_px(text, fig, image_width: int) -> float:
    """A text's height in pixels on a TensorBoard card."""
    return text.get_fontsize() * fig.dpi / 72 * CARD_PX / image_width


def cell_centre(ax, image: np.ndarray, row: int, col: int) -> np.ndarray:
    """The rendered colour (RGB) at the centre of the confusion matrix's cell (row, col)."""
    x, y = ax.transData.transform((col, row))  # display pixels, origin at the bottom left
    return image[:, image.shape[1] - int(round(y)), int(round(x))].astype(np.float64)


def cell_ink(ax, image: np.ndarray, row: int, col: int) -> np.ndarray:
    """The pixels inside the confusion matrix's cell (row, col), 2 px in from its edges, that differ from the cell's
    own colour (taken at that inner corner): what is drawn in the cell. (H, W) booleans."""
    (x0, y0), (x1, y1) = ax.transData.transform([(col - 0.5, row - 0.5), (col + 0.5, row + 0.5)])
    rows = sorted(image.shape[1] - y for y in (y0, y1))  # display y runs up, image rows down
    cols = sorted((x0, x1))
    cell = image[:, int(np.ceil(rows[0])) + 2:int(rows[1]) - 2, int(np.ceil(cols[0])) + 2:int(cols[1]) - 2]
    cell = cell.astype(np.int64)
    return np.abs(cell - cell[:, :1, :1]).sum(axis=0) > 60


def collection(ax, label: str):
    (found,) = [c for c in ax.collections if c.get_label() == label]
    return found


def class_labels(fig, image: np.ndarray, label: str) -> list[tuple[str, tuple[int, int, int, int]]]:
    """The class labels of one axis (the collection ``label``) as (text, ink box) pairs: each outline is checked to be
    matplotlib's own glyphs of its text (``TextPath`` at 9 points, moved as a whole), and its box, in image pixels
    (left, top, right, bottom; rows down), is where it is drawn: it holds ink and lies inside the image."""
    from matplotlib.textpath import TextPath

    (ax,) = fig.axes
    labels = collection(ax, label)
    scale, found = fig.dpi / 72, []
    for path, (x, y) in zip(labels.get_paths(), labels.get_offsets()):
        px, py = ax.transData.transform((x, y))
        box = path.get_extents()
        left, right = px + box.x0 * scale, px + box.x1 * scale
        top, bottom = image.shape[1] - (py + box.y1 * scale), image.shape[1] - (py + box.y0 * scale)
        assert 0 <= left and right <= image.shape[2] and 0 <= top and bottom <= image.shape[1]
        text = None
        for k in range(1000):
            own = TextPath((0, 0), str(k), size=9).vertices
            if own.shape == path.vertices.shape and np.allclose(path.vertices - path.vertices[0], own - own[0]):
                text = str(k)
                break
        assert text is not None
        region = image[:, int(top):int(np.ceil(bottom)) + 1, int(left):int(np.ceil(right)) + 1].astype(np.int64)
        assert (region.sum(axis=0) < 255).any()  # dark ink
        found.append((text, (int(left), int(top), int(np.ceil(right)), int(np.ceil(bottom)))))
    return found


def test_confusion_matrix_of_10_classes_is_legible_on_a_card():
    """Each non-empty cell shows its count (empty cells blank): drawn inside the cell, its digits at least 7 px high
    on a card (a 10 px font: DejaVu Sans' digits are 0.73 em high) and one digit wider per digit of the count; the
    class labels under each column and beside each row, every other text at least 9 px high; nothing outside the
    image or on top of another text, and the matrix takes most of its width."""
    torch.manual_seed(4)
    matrix = torch.randint(0, 3, (10, 10)) + torch.diag(torch.randint(80, 1000, (10,)))
    fig = figures.confusion_figure(matrix)
    image = figures.figure_image(fig)
    height, width = image.shape[1:]
    (ax,) = fig.axes
    renderer = fig.canvas.get_renderer()
    ink = {(i, j): cell_ink(ax, image, i, j) for i in range(10) for j in range(10)}
    assert {cell for cell, drawn in ink.items() if drawn.any()} == {
        (i, j) for (i, j), v in np.ndenumerate(matrix.numpy()) if v}
    ink_width = {}
    for (i, j), drawn in ink.items():
        if drawn.any():
            assert not (drawn[0].any() or drawn[-1].any() or drawn[:, 0].any() or drawn[:, -1].any())  # inside
            rows, cols = np.nonzero(drawn.any(axis=1))[0], np.nonzero(drawn.any(axis=0))[0]
            assert (rows[-1] - rows[0] + 1) * CARD_PX / width >= 7, (i, j)
            ink_width[int(matrix[i, j])] = cols[-1] - cols[0] + 1
    by_digits = {}
    for count, px in ink_width.items():
        by_digits.setdefault(len(str(count)), []).append(px)
    digits = sorted(by_digits)
    assert len(digits) >= 2 and all(max(by_digits[a]) < min(by_digits[b]) for a, b in zip(digits, digits[1:]))

    matrix_box = ax.get_window_extent(renderer)
    texts = {t.get_text(): t.get_window_extent(renderer) for t in (ax.title, ax.xaxis.label, ax.yaxis.label)}
    boxes = [(t, (b.x0, height - b.y1, b.x1, height - b.y0)) for t, b in texts.items()]  # image pixels, rows down
    for text, box in texts.items():
        assert on_card_px(next(t for t in (ax.title, ax.xaxis.label, ax.yaxis.label) if t.get_text() == text),
                          fig, width) >= 9, text
        assert box.x0 >= 0 and box.y0 >= 0 and box.x1 <= width and box.y1 <= height, text
    assert 9 * fig.dpi / 72 * CARD_PX / width >= 9  # the class labels' size on a card
    columns, rows = class_labels(fig, image, "predicted classes"), class_labels(fig, image, "true classes")
    assert [t for t, _ in columns] == [t for t, _ in rows] == [str(k) for k in range(10)]  # every class
    for k, (_, (left, top, right, bottom)) in enumerate(columns):  # under its column, below the matrix
        (cx, _), = ax.transData.transform([(k, 0)])
        assert left < cx < right and top > height - matrix_box.y0
    for k, (_, (left, top, right, bottom)) in enumerate(rows):  # beside its row, left of the matrix
        (_, cy), = ax.transData.transform([(0, k)])
        assert top < height - cy < bottom and right < matrix_box.x0
    placed = boxes + [(f"class {t}", b) for t, b in columns + rows]
    for i, (a, (l1, t1, r1, b1)) in enumerate(placed):
        for b, (l2, t2, r2, b2) in placed[i + 1:]:
            assert r1 < l2 or r2 < l1 or b1 < t2 or b2 < t1, (a, b)  # no two texts overlap
    assert matrix_box.width >= 0.8 * width  # tight: little margin


def test_confusion_matrix_of_100_classes_shows_colours_and_every_10th_class():
    """Too many classes for legible counts: none are drawn; the cells' colours darken in step with their counts and
    the axes name every 10th class, labels apart from each other."""
    counts = torch.arange(100) * 7 % 101  # distinct counts in a shuffled order on the diagonal
    matrix = torch.diag(counts)
    fig = figures.confusion_figure(matrix)
    image = figures.figure_image(fig)
    (ax,) = fig.axes
    assert not ax.texts and [c.get_label() for c in ax.collections] == ["predicted classes", "true classes"]
    darkness = np.array([765 - cell_centre(ax, image, i, i).sum() for i in range(100)])
    order = np.argsort(counts.numpy())
    assert (np.diff(darkness[order]) >= 0).all() and darkness[order[-1]] > darkness[order[0]] + 300
    assert np.corrcoef(counts.numpy(), darkness)[0, 1] > 0.98  # a colour scale, not two colours
    assert 765 - cell_centre(ax, image, 3, 70).sum() < 20  # an empty cell is (nearly) white
    for axis in ("predicted classes", "true classes"):
        labels = class_labels(fig, image, axis)
        assert [t for t, _ in labels] == [str(k) for k in range(0, 100, 10)]
        for (_, (l1, t1, r1, b1)), (_, (l2, t2, r2, b2)) in zip(labels, labels[1:]):
            assert r1 < l2 or b1 < t2  # apart: the next one to the right, or lower


def test_a_confusion_matrix_of_as_many_classes_takes_the_first_ones_layout():
    """matplotlib's constrained layout runs for the first matrix of n classes only; a later one (other counts, other
    accuracy) takes its axes box, is drawn without a layout engine and comes out pixel for pixel as the layout
    engine draws it."""
    torch.manual_seed(5)
    n = 7
    first, later = (torch.randint(0, 3, (n, n)) + torch.diag(torch.randint(20, 990, (n,))) for _ in range(2))
    figures._CONFUSION_AXES.pop(n, None)
    laid_out = figures.figure_image(figures.confusion_figure(later))  # the layout engine's own
    figures._CONFUSION_AXES.pop(n, None)
    figures.figure_image(figures.confusion_figure(first))
    fig = figures.confusion_figure(later)
    assert fig.get_layout_engine() is None
    assert np.array_equal(figures.figure_image(fig), laid_out)


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
    torch (matplotlib and torchvision load inside the functions that draw)."""
    tree = ast.parse(Path(figures.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {name for name in imported if name.split(".")[0] == "cnnrun"}
    top = {alias.name for node in tree.body if isinstance(node, ast.Import) for alias in node.names}
    top |= {node.module for node in tree.body if isinstance(node, ast.ImportFrom)}
    assert top == {"__future__", "functools", "math", "numpy", "torch"}
