"""Pictures of tensors, shared by the dashboards (``cnnrun.train.dashboards``) and the report (``cnnrun.report``).

Image grids (torchvision's ``make_grid``: padding and row wrapping) of filters, feature maps and samples, the
confusion matrix and misclassified samples as figures, histograms for TensorBoard, and a figure rendered to an image
array. Low level: it imports no other cnnrun module. matplotlib and torchvision load when a picture is drawn, so
that a run with every dashboard off never loads them.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch

MAX_TILES = 256            # filter tiles in one grid
MAX_MAPS = 32              # feature-map channels shown per layer
MIN_TILE_PX = 64           # small filters and maps are enlarged (nearest) to at least this many pixels
HISTOGRAM_BINS = 64
GRID_PAD = 2               # white pixels between the tiles of a grid
GROUP_PAD = 6              # and between groups of tiles (one filter's input channels or depth slices)
LABEL_PX = 26              # room above each misclassified sample for its labels
LABEL_PAD = 4              # white pixels between misclassified samples
LABEL_PT = 8               # the misclassified samples' labels, points
# TensorBoard shows an image scaled to its card's width (about 340 px in a 1400 px wide window), so what is legible
# there depends on a figure's text size relative to its width, not on its pixels. A figure CARD_INCHES wide shows its
# text on the card at about its point size; it is drawn at FIGURE_DPI so that it stays sharp at its actual size.
CARD_INCHES = 4.5
FIGURE_DPI = 150
MAX_VALUE_PT = 11          # the confusion matrix's counts: at most this size,
MIN_VALUE_PT = 8           # and left out (colours only) where they would have to be smaller to fit their cells
MAX_CLASS_TICKS = 15       # class labels on each axis of the confusion matrix,
CLASS_PT = 9               # their size, points,
CLASS_GAP_PT = 5           # and their distance from the matrix (a tick mark of 2 points, and 3 points), points


def figure_image(fig) -> np.ndarray:
    """A matplotlib Figure rendered with the Agg canvas: (3, H, W) uint8 (no pyplot, no global backend change)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # matplotlib: only when a figure is drawn

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.ascontiguousarray(np.asarray(canvas.buffer_rgba())[..., :3].transpose(2, 0, 1))


# -- image grids -------------------------------------------------------------------------------------------------
def enlarge(tiles: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) tiles enlarged by an integer factor (nearest) so that small kernels and maps are visible."""
    factor = max(1, math.ceil(MIN_TILE_PX / max(tiles.shape[-2:])))
    return tiles if factor == 1 else tiles.repeat_interleave(factor, -2).repeat_interleave(factor, -1)


def scale_each(tiles: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) tiles, each min-max scaled to [0, 1] over all its channels (as ``make_grid(normalize=True,
    scale_each=True)`` does; a constant tile becomes 0)."""
    low = tiles.amin(dim=(1, 2, 3), keepdim=True)
    high = tiles.amax(dim=(1, 2, 3), keepdim=True)
    return (tiles - low) / (high - low).clamp_min(1e-5)


def image_grid(tiles: torch.Tensor, nrow: int, *, label_px: int = 0, pad: int = GRID_PAD) -> torch.Tensor:
    """(N, C, H, W) -> (3, H', W') in [0, 1]: tiles enlarged, each scaled to its own range, in rows of ``nrow`` on
    white, ``pad`` pixels apart and ``label_px`` white pixels above each tile. A single tile without labels comes
    back unpadded."""
    from torchvision.utils import make_grid  # torchvision: only when a grid is drawn

    tiles = scale_each(enlarge(tiles.detach().float().cpu()))
    if label_px:
        tiles = torch.nn.functional.pad(tiles, (0, 0, label_px, 0), value=1.0)
    grid = make_grid(tiles, nrow=max(1, nrow), padding=pad, pad_value=1.0)
    if label_px and len(tiles) == 1:  # make_grid returns a lone tile without its frame; a labelled one keeps it
        grid = torch.nn.functional.pad(grid, (pad, pad, pad, pad), value=1.0)
    return grid


def near_square_columns(count: int, tile_aspect: float = 1.0) -> int:
    """Columns of a grid of ``count`` tiles (each ``tile_aspect`` = height / width) that is about as wide as it is
    tall, rather wider than taller: TensorBoard scales an image to its card's width, so a tall one makes a long card."""
    return max(1, min(count, math.ceil(math.sqrt(count * tile_aspect))))


def grouped_grid(tiles: torch.Tensor, group: int = 1) -> torch.Tensor:
    """(N, C, H, W) -> (3, H', W'): a near-square grid (:func:`image_grid`) of the tiles, where each run of ``group``
    consecutive tiles (one filter's input channels, or its depth slices) stays together on a row and the groups are
    ``GROUP_PAD`` pixels apart."""
    if group <= 1:
        return image_grid(tiles, near_square_columns(len(tiles), tiles.shape[-2] / tiles.shape[-1]))
    from torchvision.utils import make_grid  # torchvision: only when a grid is drawn

    rows = torch.stack([image_grid(tiles[i:i + group], group) for i in range(0, len(tiles), group)])
    columns = near_square_columns(len(rows), rows.shape[-2] / rows.shape[-1])
    return make_grid(rows, nrow=columns, padding=GROUP_PAD, pad_value=1.0)


def signal_strip(rows: torch.Tensor) -> torch.Tensor:
    """1D signals (R, L) as one heatmap (3, H, W) in [0, 1]: a band per signal, a column per position, enlarged
    (nearest) to at least 2 * MIN_TILE_PX pixels wide and about as tall as wide (a band at most MIN_TILE_PX high)."""
    count, length = rows.shape
    column = max(1, math.ceil(2 * MIN_TILE_PX / length))
    band = max(1, min(MIN_TILE_PX, round(length * column / count)))
    return image_grid(rows.repeat_interleave(band, 0).repeat_interleave(column, 1)[None, None], 1)


def _first_groups(slices: torch.Tensor) -> torch.Tensor:
    """(G, S, h, w) groups of 2D slices -> a :func:`grouped_grid` of the first ones (``MAX_TILES`` slices)."""
    per_group = min(slices.shape[1], MAX_TILES)
    keep = max(1, MAX_TILES // per_group)
    return grouped_grid(slices[:keep, :per_group].reshape(-1, 1, *slices.shape[-2:]), per_group)


def filter_grid(weight: torch.Tensor) -> torch.Tensor:
    """A convolution's weight as an image (3, H, W) in [0, 1], wrapped into a near-square grid.

    2D: one tile per filter, RGB when the filters have 3 input channels, else a group per filter of one grey tile
    per input channel. 1D: one heatmap, a band per (filter, input channel), a column per tap. 3D: a group per
    (filter, input channel) of one tile per depth slice. Large layers show their first filters (``MAX_TILES``
    tiles).
    """
    w = weight.detach().float().cpu()
    out_ch, in_ch = w.shape[:2]
    if w.dim() == 3:
        return signal_strip(w.reshape(out_ch * in_ch, w.shape[-1])[:MAX_TILES])
    if w.dim() == 4:
        if in_ch in (1, 3):  # grey or colour filters
            return grouped_grid(w[:MAX_TILES])
        return _first_groups(w)
    if w.dim() == 5:
        return _first_groups(w.reshape(out_ch * in_ch, *w.shape[2:]))
    raise ValueError(f"cannot render a weight of shape {tuple(w.shape)}")


def map_grid(maps: torch.Tensor) -> torch.Tensor:
    """One sample's activations (C, *spatial) as an image (3, H, W) in [0, 1].

    2D: a near-square grid of a tile per channel (the first ``MAX_MAPS``); 3D: the same of each channel's middle
    depth slice; 1D: one heatmap with a band per channel.
    """
    m = maps.detach().float().cpu()
    if m.dim() == 2:
        return signal_strip(m[:MAX_MAPS])
    if m.dim() == 4:
        m = m[:, m.shape[1] // 2]
    if m.dim() != 3:
        raise ValueError(f"cannot render activations of shape {tuple(m.shape)}")
    return grouped_grid(m[:MAX_MAPS, None])


def sample_image(x: torch.Tensor) -> torch.Tensor:
    """One input sample (C, *spatial) as an image: grey or colour when it has 1 or 3 channels, else its channels."""
    x = x.detach().float().cpu()
    if x.dim() == 3 and x.shape[0] in (1, 3):
        return image_grid(x[None], 1)
    return map_grid(x)


def sample_tiles(x: torch.Tensor) -> torch.Tensor:
    """Samples (N, C, *spatial) as image tiles (N, 1 or 3, H, W): 2D as they are (the first channel unless there
    are 3), 3D as their middle depth slice, 1D as a row per channel."""
    x = x.detach().float().cpu()
    if x.dim() == 3:  # (N, C, L)
        return x[:, None, :3].repeat_interleave(max(1, x.shape[-1] // 8), 2)
    if x.dim() == 5:  # (N, C, D, H, W)
        x = x[:, :, x.shape[2] // 2]
    return x if x.shape[1] == 3 else x[:, :1]


# -- figures -----------------------------------------------------------------------------------------------------
def confusion_figure(matrix: torch.Tensor):
    """The confusion matrix (rows: true class, columns: predicted class) as a figure that is legible on a TensorBoard
    card (``CARD_INCHES``): the counts in their cells as large as they fit (empty cells blank), none where they would
    be too small to read (many classes: the colours alone), at most ``MAX_CLASS_TICKS`` class labels per axis.

    The class labels are glyph outlines like the counts (:func:`glyph_labels`), not matplotlib's ticks: making and
    drawing two axes' ticks took 45 of the figure's 70 ms, and a sweep's jobs draw one figure each."""
    from matplotlib.figure import Figure  # matplotlib: only when a figure is drawn

    counts = matrix.detach().long().cpu().numpy()
    n = counts.shape[0]
    box = _CONFUSION_AXES.get(n)
    fig = Figure(figsize=(CARD_INCHES, CARD_INCHES), dpi=FIGURE_DPI, layout="constrained" if box is None else None)
    ax = fig.add_subplot() if box is None else fig.add_axes(box)
    ax.imshow(counts, cmap="Blues", vmin=0, vmax=max(int(counts.max()), 1), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ticks = range(0, n, _tick_step(n))
    classes, black = [str(k) for k in ticks], ["black"] * len(ticks)
    columns = glyph_labels(classes, [(k, n - 0.5) for k in ticks], black, CLASS_PT, ax, anchor="top",
                           gap=CLASS_GAP_PT, label="predicted classes")
    rows = glyph_labels(classes, [(-0.5, k) for k in ticks], black, CLASS_PT, ax, anchor="right", gap=CLASS_GAP_PT,
                        label="true classes")
    # tick marks as the axes draw them (markers TICKDOWN, TICKLEFT), 2 points long
    ax.plot(ticks, [n - 0.5] * len(ticks), linestyle="none", marker=3, markersize=2, markeredgewidth=0.8,
            color="black", clip_on=False, scalex=False, scaley=False)
    ax.plot([-0.5] * len(ticks), ticks, linestyle="none", marker=0, markersize=2, markeredgewidth=0.8,
            color="black", clip_on=False, scalex=False, scaley=False)
    for labels in (columns, rows):
        labels.set_in_layout(True)  # the layout makes room for them as it would for tick labels
        labels.set_clip_on(False)
        ax.add_collection(labels, autolim=False)
    wide, high = (max(extent) for extent in zip(*(_size(k, CLASS_PT) for k in classes)))
    ax.set_xlabel("predicted class", fontsize=10, labelpad=CLASS_GAP_PT + high + 3)
    ax.set_ylabel("true class", fontsize=10, labelpad=CLASS_GAP_PT + wide + 4)
    total = int(counts.sum())
    ax.set_title(f"test split: {total} samples, accuracy {int(counts.trace()) / max(total, 1):.4g}", fontsize=11)
    size = _value_size(n, len(str(int(counts.max()))))
    if size:
        dark = counts.max() / 2
        shown = [(j, i, int(count)) for (i, j), count in np.ndenumerate(counts) if count]  # empty cells stay blank
        ax.add_collection(glyph_labels([str(c) for _, _, c in shown], [(j, i) for j, i, _ in shown],
                                       ["white" if c > dark else "black" for _, _, c in shown], size, ax,
                                       label="counts"),
                          autolim=False)
    if box is None:  # lay it out now, and keep where the axes went for the next matrix of n classes
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        FigureCanvasAgg(fig)
        fig.get_layout_engine().execute(fig)
        _CONFUSION_AXES[n] = ax.get_position().bounds
        fig.set_layout_engine("none")
    return fig


def glyph_labels(texts: list[str], positions: list[tuple[float, float]], colours: list[str], size: float, ax, *,
                 anchor: str = "centre", gap: float = 0.0, label: str = ""):
    """Short one-line ``texts`` at their positions (``ax``'s data coordinates), ``size`` points high, as one
    collection of glyph outlines (matplotlib's ``TextPath``, in the default font), each placed by ``anchor`` (see
    :func:`_outline`) ``gap`` points away from its position. A confusion matrix's hundred counts draw in about 3 ms
    instead of 80 ms as ``Text`` artists, which lay out and render each one on its own."""
    from matplotlib.collections import PathCollection
    from matplotlib.transforms import Affine2D

    paths = [_outline(text, size, anchor, gap) for text in texts]
    return PathCollection(paths, offsets=positions, offset_transform=ax.transData, facecolors=colours,
                          edgecolors="none", transform=Affine2D().scale(ax.figure.dpi / 72), zorder=3,
                          in_layout=False, label=label)


@functools.lru_cache(maxsize=4096)
def _outline(text: str, size: float, anchor: str = "centre", gap: float = 0.0):
    """The outline of ``text`` at ``size`` points (in points) placed by ``anchor`` about (0, 0): ``centre`` centred
    on it, ``baseline`` starting there on its baseline, ``top`` centred under it with its top ``gap`` points lower,
    ``right`` centred beside it with its right edge ``gap`` points to its left."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextPath
    from matplotlib.transforms import Affine2D

    path = TextPath((0, 0), text, size=size, prop=FontProperties(size=size))
    if anchor == "baseline":
        return path
    box = path.get_extents()
    x, y = -(box.x0 + box.x1) / 2, -(box.y0 + box.y1) / 2
    if anchor == "top":
        y = -box.y1 - gap
    elif anchor == "right":
        x = -box.x1 - gap
    elif anchor != "centre":
        raise ValueError(f"anchor: {anchor!r} is not one of centre, baseline, top, right")
    return path.transformed(Affine2D().translate(x, y))


@functools.lru_cache(maxsize=4096)
def _size(text: str, size: float) -> tuple[float, float]:
    """(width, height) of the outline of ``text`` at ``size`` points, in points."""
    box = _outline(text, size).get_extents()
    return box.width, box.height


# The confusion matrix's axes box (figure fractions) by number of classes, from the constrained layout of the first
# such figure: what decides it (the title's height, the axis labels, the class ticks) is the same for every matrix of
# n classes, and laying out a figure took 30 ms of its drawing (a sweep's jobs draw one each).
_CONFUSION_AXES: dict[int, tuple[float, float, float, float]] = {}


def _tick_step(classes: int) -> int:
    """Every class's label, or every 2nd, 5th, 10th, 20th ... so that an axis has at most ``MAX_CLASS_TICKS``."""
    magnitude = 1
    while True:
        for factor in (1, 2, 5):
            if math.ceil(classes / (factor * magnitude)) <= MAX_CLASS_TICKS:
                return factor * magnitude
        magnitude *= 10


def _value_size(classes: int, digits: int) -> float:
    """The font size (points) of the counts in a confusion matrix of ``classes`` classes drawn ``CARD_INCHES`` wide,
    so that ``digits`` digits fit a cell; 0 when that is below ``MIN_VALUE_PT``."""
    cell_pt = 0.75 * CARD_INCHES * 72 / classes  # the axes take about three quarters of the figure's width
    size = min(MAX_VALUE_PT, cell_pt / (0.65 * digits + 0.35))  # a digit is about 0.6 em wide, plus a margin
    return size if size >= MIN_VALUE_PT else 0.0


def confusion_markdown(matrix: torch.Tensor) -> str:
    """The counts as a markdown table: a row per true class, a column per predicted class."""
    n = matrix.shape[0]
    lines = ["| true \\ predicted | " + " | ".join(str(j) for j in range(n)) + " |",
             "|---|" + "---:|" * n]
    for i in range(n):
        lines.append(f"| {i} | " + " | ".join(str(int(v)) for v in matrix[i]) + " |")
    return "\n".join(lines)


def misclassified_figure(x: torch.Tensor, y: torch.Tensor, pred: torch.Tensor):
    """A grid of misclassified samples (each scaled to its own range), each labelled with its true and predicted
    class. One image and one collection of glyph outlines for all the labels keep it cheap to draw."""
    from matplotlib.figure import Figure  # matplotlib: only when a figure is drawn

    cols = min(5, x.shape[0])
    tiles = enlarge(sample_tiles(x))
    grid = image_grid(tiles, cols, label_px=LABEL_PX, pad=LABEL_PAD)
    height, width = grid.shape[1:]
    dpi = 100
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set_axis_off()
    tile_h, tile_w = tiles.shape[-2:]
    line_px, descent_px = (v * dpi / 72 for v in _line_metrics(LABEL_PT))
    texts, positions = [], []
    for i in range(x.shape[0]):
        r, c = divmod(i, cols)
        left, bottom = LABEL_PAD + c * (tile_w + LABEL_PAD), (LABEL_PX + LABEL_PAD) * (r + 1) + r * tile_h - 4
        texts += [f"true {int(y[i])}", f"pred {int(pred[i])}"]  # two lines, the second's descent on ``bottom``
        positions += [(left, bottom - descent_px - line_px), (left, bottom - descent_px)]
    ax.add_collection(glyph_labels(texts, positions, ["firebrick"] * len(texts), LABEL_PT, ax, anchor="baseline"),
                      autolim=False)
    return fig


@functools.lru_cache(maxsize=8)
def _line_metrics(size: float) -> tuple[float, float]:
    """(line height, descent) of the default font at ``size`` points, in points: a line of text under another is
    one line height lower (as matplotlib lays out text with ``linespacing=1``)."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextToPath

    _, height, descent = TextToPath().get_text_width_height_descent("lp", FontProperties(size=size), ismath=False)
    return height, descent


# -- histograms --------------------------------------------------------------------------------------------------
def add_histogram(writer, tag: str, values: torch.Tensor, step: int) -> None:
    """A histogram of ``values`` in ``HISTOGRAM_BINS`` equal bins between their minimum and maximum, binned where
    the tensor lives (``torch.histc``: on the GPU only the counts travel) and written with the TensorBoard writer's
    ``add_histogram_raw``. Non-finite values are left out."""
    t = values.detach().flatten().float()
    t = t[torch.isfinite(t)]
    if t.numel() == 0:
        return
    lo, hi = (float(v) for v in torch.aminmax(t))
    if hi > lo:
        counts = torch.histc(t, bins=HISTOGRAM_BINS, min=lo, max=hi).tolist()
        limits = torch.linspace(lo, hi, HISTOGRAM_BINS + 1)[1:].tolist()  # each bucket's right edge
    else:  # a constant tensor: one bucket
        counts, limits = [float(t.numel())], [hi]
    writer.add_histogram_raw(tag, min=lo, max=hi, num=t.numel(), sum=float(t.sum()), sum_squares=float(t @ t),
                             bucket_limits=limits, bucket_counts=counts, global_step=step)
