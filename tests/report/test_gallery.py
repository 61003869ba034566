"""mode=gallery: Table 5.3's kernels and the checkerboard of transposed convolution, against independent references
(the chapter's matrices with torch.nn.functional and scipy.ndimage, and the overlap count of a stride-2 kernel)."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cnnrun import ConfigError
from cnnrun.layers.registry import get_layer_type
from cnnrun.record import RunRecord
from cnnrun.report import gallery as G
from tests.cli.test_errors import heavy_hook
from tests.conftest import run_cli

# Table 5.3, written out from the chapter (not taken from cnnrun's table)
TEXTBOOK = {
    "identity": [[0, 0, 0], [0, 1, 0], [0, 0, 0]],
    "edge_detect": [[1, 0, -1], [0, 0, 0], [-1, 0, 1]],
    "edge_detect_center": [[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]],
    "sharpen": [[0, -1, 0], [-1, 5, -1], [0, -1, 0]],
    "box_blur": (np.ones((3, 3)) / 9).tolist(),
    "gaussian_blur": (np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16).tolist(),
}


@pytest.fixture(scope="module")
def grey():
    return G.load_grey(None)


def apply_kernels(grey):
    """Table 5.3's kernels applied to ``grey`` by cnnrun's fixed_conv layers."""
    return G.apply_kernels(grey, G.kernel_layers(get_layer_type, tuple(grey.shape)))


def test_default_image_is_the_china_photo_in_grey(grey):
    from sklearn.datasets import load_sample_image

    rgb = load_sample_image("china.jpg").astype(np.float64) / 255
    luma = 0.2989 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]  # ITU-R 601-2
    assert grey.shape == (1, 427, 640) and grey.dtype == torch.float32
    assert np.abs(grey[0].numpy() - luma).max() < 1e-5


def test_kernels_equal_conv2d_with_the_textbook_matrices(grey):
    outputs = apply_kernels(grey)
    assert list(outputs) == list(TEXTBOOK)
    for name, matrix in TEXTBOOK.items():
        weight = torch.tensor(matrix, dtype=torch.float32)[None, None]
        expected = F.conv2d(grey[None], weight, padding=1)[0]
        assert outputs[name].shape == grey.shape
        torch.testing.assert_close(outputs[name], expected, atol=1e-6, rtol=0, msg=name)
    torch.testing.assert_close(outputs["identity"], grey, atol=0, rtol=0)


def test_sharpen_and_edges_equal_scipy(grey):
    """scipy.ndimage as a second reference: correlation with zero padding; the chapter's convolution (kernel rotated
    by 180 degrees) gives the same image because every Table 5.3 kernel is point-symmetric."""
    from scipy import ndimage

    image = grey[0].double().numpy()
    outputs = apply_kernels(grey)
    sharpen = ndimage.correlate(image, np.array(TEXTBOOK["sharpen"], dtype=np.float64), mode="constant", cval=0.0)
    assert np.abs(outputs["sharpen"][0].numpy() - sharpen).max() < 1e-5
    edges = ndimage.convolve(image, np.array(TEXTBOOK["edge_detect"], dtype=np.float64), mode="constant", cval=0.0)
    assert np.abs(outputs["edge_detect"][0].numpy() - edges).max() < 1e-5


def test_kernel_titles_show_the_matrices_the_layers_hold():
    """Each panel's title is the textbook matrix (integers with their common factor), read from the layer's own
    float32 weights."""
    tiny = torch.rand(1, 8, 8)
    fig = G.kernels_figure(tiny, G.kernel_layers(get_layer_type, (1, 8, 8)))
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[3] == "sharpen\n[ 0 -1  0]\n[-1  5 -1]\n[ 0 -1  0]"
    assert titles[4] == "box blur\n[1 1 1]\n[1 1 1]\n[1 1 1]  x 1/9"
    assert titles[5] == "Gaussian blur\n[1 2 1]\n[2 4 2]\n[1 2 1]  x 1/16"
    assert len(titles) == len(TEXTBOOK)


def overlaps(n: int) -> np.ndarray:
    """How many taps of a 3-wide, stride-2 transposed kernel land on each of 2n outputs, by counting. TensorFlow's
    SAME keeps 2n of the 2n + 1 full-output cells: its forward SAME conv (2n -> n) pads 0 before and 1 after, so
    nothing is cropped at the start and the surplus cell at the end."""
    counts = np.zeros(2 * n)
    for i in range(n):
        for j in range(3):
            o = 2 * i + j
            if 0 <= o < 2 * n:
                counts[o] += 1
    return counts


def test_checkerboard_transposed_is_uneven_on_a_constant_input_resize_conv_is_flat():
    c = 0.5
    transposed, resized = G.upsample_both(torch.full((1, 12, 12), c), get_layer_type)
    assert transposed.shape == resized.shape == (1, 24, 24)
    expected = c * 4 / 9 * np.outer(overlaps(12), overlaps(12))  # 1, 2 or 4 overlapping taps of weight 4/9
    assert np.abs(transposed[0].numpy() - expected).max() < 1e-6
    inner = (slice(1, -1), slice(1, -1))  # away from the zero-padded border
    assert transposed[0][inner].std() > 0.2 * c  # the checkerboard
    levels = np.unique(np.round(transposed[0][inner].double().numpy() / c, 5))
    assert np.allclose(levels, [4 / 9, 8 / 9, 16 / 9], atol=1e-5)
    torch.testing.assert_close(resized[0][inner], torch.full((22, 22), c), atol=1e-6, rtol=0)
    assert resized[0, 0, 0] < c  # the border sees zeros


def test_upsampling_layers_equal_functional_references():
    torch.manual_seed(0)
    x = torch.rand(1, 7, 9)
    transposed, resized = G.upsample_both(x, get_layer_type)
    # the full transposed output (15 x 19) without its last row and column (TensorFlow's SAME, as in overlaps())
    ref_t = F.conv_transpose2d(x[None], torch.full((1, 1, 3, 3), 4 / 9), stride=2)[0, :, :14, :18]
    ref_r = F.conv2d(F.interpolate(x[None], scale_factor=2, mode="nearest"), torch.full((1, 1, 3, 3), 1 / 9),
                     padding=1)[0]
    torch.testing.assert_close(transposed, ref_t, atol=1e-6, rtol=0)
    torch.testing.assert_close(resized, ref_r, atol=1e-6, rtol=0)
    assert transposed.mean() == pytest.approx(float(x.mean()), rel=0.1)  # gain 1 up to the border


def plain(tmp_path, **keys):
    cfg = {"mode": "gallery", "seed": 0, "ckpt_path": None, "imports": [], "kind": "kernels", "image": None,
           "logger": {"tensorboard": True}}
    cfg.update(keys)
    return cfg


def test_gallery_writes_the_png_and_logs_it(tmp_path):
    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    photo = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(photo)
    out = tmp_path / "run"
    out.mkdir()
    record = RunRecord()
    assert G.gallery(plain(tmp_path, image=str(photo)), out, record, get_layer_type) == {}
    assert record.status == "completed" and record.gallery == str(out / "gallery_kernels.png")
    with Image.open(out / "gallery_kernels.png") as image:
        assert image.format == "PNG" and image.width > 600 and image.height > 300
    G.gallery(plain(tmp_path, kind="checkerboard", image=str(photo)), out, RunRecord(), get_layer_type)
    assert (out / "gallery_checkerboard.png").is_file()
    tags = set()
    for events in (out / "tensorboard").glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events), size_guidance={"images": 0})
        acc.Reload()
        tags |= set(acc.Tags()["images"])
    assert tags == {"gallery/kernels", "gallery/checkerboard"}


def test_gallery_without_tensorboard(tmp_path):
    G.gallery(plain(tmp_path, kind="checkerboard", logger={"tensorboard": False}), tmp_path, RunRecord(),
              get_layer_type)
    assert (tmp_path / "gallery_checkerboard.png").is_file() and not (tmp_path / "tensorboard").exists()


@pytest.mark.parametrize("keys,path,message", [
    ({"kind": "checkerbord"}, "kind", "did you mean 'checkerboard'?"),
    ({"image": "missing.jpg"}, "image", "no image file at missing.jpg"),
    ({"image": "NOTES"}, "image", "cannot read NOTES as an image"),
    ({"image": 3}, "image", "must be the path of an image file"),
])
def test_bad_kind_or_image_is_a_config_error(tmp_path, monkeypatch, keys, path, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "NOTES").write_text("not an image")
    with pytest.raises(ConfigError) as err:
        G.gallery(plain(tmp_path, **keys), tmp_path, RunRecord(), get_layer_type)
    assert err.value.path == path and message in err.value.message


def test_cli_gallery_and_its_errors(tmp_path):
    proc = run_cli(["mode=gallery"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = (tmp_path / "outputs" / "runs").iterdir()
    assert (run_dir / "gallery_kernels.png").is_file()
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "completed" and record["mode"] == "gallery"
    proc = run_cli(["mode=gallery", "image=nowhere/cat.jpg"], cwd=tmp_path, env=heavy_hook(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: image: no image file at nowhere/cat.jpg"]
    assert "HEAVY []" in proc.stdout, proc.stdout[-2000:]  # said before torch is imported
