"""``mode=gallery``: the chapter's pictures, computed by cnnrun's own layers.

- ``kind=kernels`` (chapter 5.2, Table 5.3): the identity, the two edge detectors, sharpen, box blur and Gaussian blur
  applied with ``fixed_conv`` to a grey image (``image=<path>``; default: scikit-learn's bundled ``china.jpg``);
- ``kind=checkerboard`` (5.15.3): a stride-2 transposed convolution (``transposed_conv``) against resize-convolution
  (``upsample_conv``: nearest x2, then a 3x3 convolution), both with uniform weights, on a constant image and on the
  grey image: the transposed convolution's uneven kernel overlap paints a checkerboard, resize-convolution does not.

Writes ``gallery_<kind>.png`` into the run folder and logs it to TensorBoard (tag ``gallery/<kind>``).

The layers come from the caller as ``layer_type`` (a name -> its layer type, whose ``build(in_shape, args)`` returns
``(module, out_shape)``: ``cnnrun.layers.registry.get_layer_type``), so that the report package knows nothing of the
layers' modules.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from cnnrun.atomic import atomic_write
from cnnrun.config import check_root
from cnnrun.errors import ConfigError, did_you_mean
from cnnrun.record import RunRecord

if TYPE_CHECKING:  # torch loads when a picture is drawn, after the settings are checked
    import torch

LayerType = Callable[[str], Any]  # a layer type by name; its build(in_shape, args) returns (module, out_shape)

KINDS = ("kernels", "checkerboard")
TITLES = {"identity": "identity (original image)", "edge_detect": "edge detection (edge differences)",
          "edge_detect_center": "edge detection (middle value)", "sharpen": "sharpen", "box_blur": "box blur",
          "gaussian_blur": "Gaussian blur"}
UPSAMPLE_KERNEL = 3
UPSAMPLE_STRIDE = 2
CHECKER_SIZE = 64  # the photo is shrunk to this height for the checkerboard, so that single pixels stay visible


def check_image(image: Any) -> Path | None:
    """The ``image`` setting: None (the default photo) or the path of an existing file."""
    if image is None:
        return None
    if not isinstance(image, str) or not image:
        raise ConfigError("image", f"must be the path of an image file, got {image!r}")
    path = Path(image).expanduser()
    if not path.is_file():
        raise ConfigError("image", f"no image file at {image}")
    return path


def load_grey(image: str | None) -> torch.Tensor:
    """The image at ``image`` (default: scikit-learn's ``china.jpg``) as grey levels (1, H, W) in [0, 1].

    Colour is converted with ITU-R 601-2 luma weights (torchvision's ``rgb_to_grayscale``).
    """
    import torch
    from torchvision.transforms.functional import rgb_to_grayscale

    path = check_image(image)

    if path is None:
        from sklearn.datasets import load_sample_image

        pixels = np.array(load_sample_image("china.jpg"))
    else:
        from PIL import Image, UnidentifiedImageError  # Pillow: matplotlib's and torchvision's image library

        try:
            with Image.open(path) as opened:
                pixels = np.array(opened.convert("RGB"))
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as err:
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ConfigError("image", f"cannot read {image} as an image: {reason}") from None
    rgb = torch.from_numpy(pixels).permute(2, 0, 1)  # uint8 (3, H, W)
    return rgb_to_grayscale(rgb.float() / 255.0)


def _layer(layer_type: LayerType, name: str, in_shape: tuple[int, ...], **args: Any) -> torch.nn.Module:
    module, _ = layer_type(name).build(in_shape, args)
    return module.eval()


def kernel_layers(layer_type: LayerType, in_shape: tuple[int, ...]) -> dict[str, torch.nn.Module]:
    """Table 5.3: a ``fixed_conv`` layer for ``in_shape`` per kernel; zero padding keeps the size."""
    return {name: _layer(layer_type, "fixed_conv", tuple(in_shape), kernel=name) for name in TITLES}


def apply_kernels(grey: torch.Tensor, layers: dict[str, torch.nn.Module]) -> dict[str, torch.Tensor]:
    """Every kernel layer of :func:`kernel_layers` applied to ``grey`` (1, H, W)."""
    import torch

    with torch.no_grad():
        return {name: layer(grey[None])[0] for name, layer in layers.items()}


def upsample_both(x: torch.Tensor, layer_type: LayerType) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` (1, H, W) upsampled x2 two ways, both (1, 2H, 2W) with uniform weights of gain 1.

    Transposed convolution (stride 2, kernel 3, padding same, TensorFlow's: the full output's surplus last row and
    column are cropped): each input pixel spreads 9 weights of 4/9 over the output, so output pixels receive 1, 2 or
    4 contributions by their position (the checkerboard). Resize-convolution
    (nearest x2, then a 3x3 convolution with weights 1/9): every output pixel averages the same number of values.
    """
    import torch

    shape = tuple(x.shape)
    k, s = UPSAMPLE_KERNEL, UPSAMPLE_STRIDE
    transposed = _layer(layer_type, "transposed_conv", shape, out_channels=1, kernel_size=k, stride=s,
                        padding="same", bias=False)
    resize = _layer(layer_type, "upsample_conv", shape, out_channels=1, scale_factor=s, mode="nearest",
                    kernel_size=k, padding="same", bias=False)
    with torch.no_grad():
        transposed.weight.fill_(s * s / (k * k))
        resize[1].weight.fill_(1.0 / (k * k))
        return transposed(x[None])[0], resize(x[None])[0]


def _matrix_text(matrix: np.ndarray) -> str:
    """A kernel as rows of integers, with its common factor (1/9, 1/16) when it has one."""
    values = np.asarray(matrix, dtype=np.float64)
    for denominator in range(1, 65):
        scaled = values * denominator
        if np.allclose(scaled, np.round(scaled), atol=1e-9):
            break
    else:
        denominator, scaled = 1, values
    width = max(len(f"{v:g}") for v in np.round(scaled).ravel())
    rows = "\n".join("[" + " ".join(f"{v:>{width}g}" for v in np.round(row)) + "]" for row in scaled)
    return rows + (f"  x 1/{denominator}" if denominator > 1 else "")


def kernels_figure(grey: torch.Tensor, layers: dict[str, torch.nn.Module]):
    """A grid of ``grey`` convolved by each kernel layer, titled with the kernel the layer holds; grey levels clipped
    to [0, 1] as an image editor shows them."""
    from matplotlib.figure import Figure  # matplotlib: only when a picture is drawn

    outputs = apply_kernels(grey, layers)
    height, width = grey.shape[-2:]
    cols = 3
    rows = -(-len(outputs) // cols)
    panel = 4.0
    aspect = min(height / width, 2.0)  # very tall images: panels no taller than twice their width
    fig = Figure(figsize=(cols * panel, rows * (panel * aspect + 1.3)), dpi=100)
    for i, (name, image) in enumerate(outputs.items()):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(image[0].clamp(0, 1).numpy(), cmap="gray", vmin=0.0, vmax=1.0)
        kernel = layers[name].weight[0, 0].detach().numpy()  # (channels, 1, kh, kw): every channel's is the same
        ax.set_title(f"{TITLES.get(name, name)}\n{_matrix_text(kernel)}", fontsize=9, family="monospace")
        ax.set_axis_off()
    fig.suptitle("Table 5.3: fixed_conv kernels (3x3, zero padding)", fontsize=12)
    fig.tight_layout()
    return fig


def checkerboard_figure(grey: torch.Tensor, layer_type: LayerType):
    """Transposed convolution against resize-convolution on a constant image, on the (shrunk) photo, and the
    constant image's middle rows as profiles."""
    import torch
    import torch.nn.functional as F
    from matplotlib.figure import Figure  # matplotlib: only when a picture is drawn

    height, width = grey.shape[-2:]
    small_w = max(1, round(width * CHECKER_SIZE / height))
    photo = F.interpolate(grey[None], size=(CHECKER_SIZE, small_w), mode="area")[0] if height > CHECKER_SIZE else grey
    constant = torch.full((1, 16, 16), 0.5)
    fig = Figure(figsize=(12, 10.5), dpi=100)
    grid = fig.add_gridspec(3, 3, height_ratios=[1, 1, 0.8])
    columns = ("input", f"transposed_conv (stride {UPSAMPLE_STRIDE}, {UPSAMPLE_KERNEL}x{UPSAMPLE_KERNEL}, uniform)",
               f"upsample_conv (nearest x{UPSAMPLE_STRIDE}, then {UPSAMPLE_KERNEL}x{UPSAMPLE_KERNEL}, uniform)")
    profiles = {}
    for r, (label, x) in enumerate((("constant 0.5", constant), ("photo", photo))):
        transposed, resized = upsample_both(x, layer_type)
        images = (x, transposed, resized)
        low = min(float(im.min()) for im in images)
        high = max(float(im.max()) for im in images)
        for c, (title, image) in enumerate(zip(columns, images)):
            ax = fig.add_subplot(grid[r, c])
            ax.imshow(image[0].numpy(), cmap="gray", vmin=low, vmax=high, interpolation="nearest")
            ax.set_title(f"{label}: {title}" if c == 0 else title, fontsize=9)
            ax.set_axis_off()
        if r == 0:
            middle = transposed.shape[1] // 2
            profiles = {f"transposed_conv, row {middle}": transposed[0, middle],
                        f"transposed_conv, row {middle + 1}": transposed[0, middle + 1],
                        f"upsample_conv, row {middle}": resized[0, middle]}
    ax = fig.add_subplot(grid[2, :])
    for name, values in profiles.items():
        ax.plot(values.numpy(), marker=".", label=name)
    ax.set_title("constant input, two middle rows of the output: the transposed convolution's pixels get 1, 2 or 4 "
                 "kernel overlaps (the checkerboard); resize-convolution is flat up to the zero-padded border",
                 fontsize=9)
    ax.set_xlabel("column")
    ax.legend(fontsize=9)
    fig.suptitle("5.15.3: checkerboard artefact of transposed convolution", fontsize=12)
    fig.tight_layout()
    return fig


def check_gallery(plain: dict[str, Any]) -> None:
    """The root keys, ``kind`` and ``image`` of a gallery config (no torch needed)."""
    check_root(plain)
    kind = plain["kind"]
    if kind not in KINDS:
        raise ConfigError("kind", f"unknown gallery kind {kind!r}{did_you_mean(str(kind), KINDS)} "
                                  f"(known: {', '.join(KINDS)})")
    check_image(plain["image"])


def gallery(plain: dict[str, Any], run_dir: Path, record: RunRecord, layer_type: LayerType) -> dict[str, float]:
    """Draw the gallery picture of ``plain['kind']`` with the layers of ``layer_type`` into ``run_dir`` (and
    TensorBoard); returns no metrics."""
    check_gallery(plain)
    kind = plain["kind"]
    grey = load_grey(plain["image"])
    if kind == "kernels":
        fig = kernels_figure(grey, kernel_layers(layer_type, tuple(grey.shape)))
    else:
        fig = checkerboard_figure(grey, layer_type)
    png = run_dir / f"gallery_{kind}.png"
    atomic_write(png, lambda f: fig.savefig(f, format="png"))
    if plain["logger"]["tensorboard"]:
        from torch.utils.tensorboard import SummaryWriter  # TensorBoard: only when the picture is logged

        from cnnrun.figures import figure_image  # imports torch: not before the settings are checked

        with SummaryWriter(log_dir=str(run_dir / "tensorboard")) as writer:
            writer.add_image(f"gallery/{kind}", figure_image(fig), 0)
    record.status = "completed"
    record.gallery = str(png)
    print(f"gallery: {png}")
    return {}
