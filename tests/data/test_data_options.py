"""Data settings not proven elsewhere, each against a reference written here or an outside implementation:
test_fraction against scikit-learn's split sizes, image_folder's resize: stretch against torchvision's resize, the
mnist1d package's own generator for generator_seed and shuffle_seq, the moving digits' glyph size and pixel noise,
and the synthetic data's noise around each class pattern."""
import math
import random

import numpy as np
import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from cnnrun import compose
from cnnrun.config import to_plain
from cnnrun.data import load_data, moving_digits
from tests.data.fakes import write_png_folder


def data_cfg(*overrides):
    return to_plain(compose(list(overrides)))["data"]


@pytest.mark.parametrize("overrides,n,test_fraction", [
    (["data=digits"], 1797, 0.35), (["data=synthetic", "data.num_samples=500", "data.num_classes=5"], 500, 0.3)])
def test_test_fraction_holds_out_that_share_of_all_samples(overrides, n, test_fraction):
    s = load_data(data_cfg(*overrides, f"data.test_fraction={test_fraction}", "data.val_fraction=0.1"))
    test = math.ceil(test_fraction * n)  # scikit-learn's train_test_split: ceil(test_size * n) held out
    val = math.ceil(0.1 * (n - test))  # then val_fraction of the rest
    assert s.sizes() == {"train": n - test - val, "val": val, "test": test}


def test_image_folder_stretch_resizes_without_keeping_the_aspect_ratio(tmp_path):
    written = write_png_folder(tmp_path / "d", {"a": 2, "b": 2}, size=(20, 14))
    cfg = data_cfg("data=image_folder", f"data.root={tmp_path / 'd'}", "data.num_classes=2", "data.channels=3",
                   "data.image_size=8", "data.cache=memory", "data.resize=stretch", "data.normalize=false",
                   "data.test_fraction=0.5", "data.val_fraction=0.5", "data.num_workers=0")
    s = load_data(cfg)
    expected = {TF.resize(torch.from_numpy(p).permute(2, 0, 1), [8, 8], antialias=True).numpy().tobytes()
                for p, _ in written.values()}
    assert {x.numpy().tobytes() for x in torch.cat([s.train_x, s.val_x, s.test_x])} == expected


def test_digits_in_three_channels_repeat_the_grey_image():
    grey = load_data(data_cfg("data.input_shape=[1,16,16]", "data.normalize=false"))
    rgb = load_data(data_cfg("data.input_shape=[3,16,16]", "data.normalize=false"))
    assert rgb.input_shape == (3, 16, 16)
    assert torch.equal(rgb.test_x, grey.test_x.expand(-1, 3, -1, -1))


def package_dataset(num_samples, seed, shuffle_seq):
    """The mnist1d package's own data set for these arguments (its generator reseeds numpy's and Python's global
    generators: they are restored)."""
    from mnist1d.data import get_dataset_args, make_dataset

    state = np.random.get_state(), random.getstate()
    args = get_dataset_args()
    args.num_samples, args.seed, args.shuffle_seq = num_samples, seed, shuffle_seq
    try:
        return make_dataset(args)
    finally:
        np.random.set_state(state[0])
        random.setstate(state[1])


def test_mnist1d_generator_seed_and_shuffle_seq_are_the_packages(tmp_path):
    s = load_data(data_cfg("data=mnist1d", "data.num_samples=150", "data.generator_seed=7", "data.shuffle_seq=true"))
    reference = package_dataset(150, 7, True)
    torch.testing.assert_close(s.test_x[:, 0], torch.from_numpy(reference["x_test"]).float())
    assert s.test_y.tolist() == reference["y_test"].tolist()
    unshuffled = package_dataset(150, 7, False)
    assert not np.allclose(unshuffled["x_test"], reference["x_test"])  # the option changes the data


def bounding_boxes(frames: torch.Tensor) -> list[tuple[int, int]]:
    """(height, width) of the lit pixels of every frame (N, H, W)."""
    boxes = []
    for f in frames:
        rows, cols = f.any(1).nonzero().flatten(), f.any(0).nonzero().flatten()
        boxes.append((int(rows[-1] - rows[0]) + 1, int(cols[-1] - cols[0]) + 1))
    return boxes


@pytest.mark.parametrize("digit_size", [6, 14])
def test_moving_digits_glyphs_are_digit_size_pixels(digit_size):
    cfg = data_cfg("data=moving_digits", "data.num_samples=100", f"data.digit_size={digit_size}", "data.frames=4")
    clips = moving_digits.render(cfg)[0]
    boxes = bounding_boxes(clips[:, 0, 0] > 0)  # the first frame of every clip
    assert max(max(b) for b in boxes) == digit_size  # the widest digits fill the glyph's square


def test_moving_digits_move_speed_pixels_per_frame():
    """data.speed: [2, 3] draws 2 or 3 pixels per frame per clip: the lit pixels' bounding box moves by that many
    pixels between consecutive frames (along a row, a column or a diagonal), the same step in every frame."""
    cfg = data_cfg("data=moving_digits", "data.num_samples=60", "data.frames=4", "data.speed=[2,3]",
                   "data.directions=8")
    clips = moving_digits.render(cfg)[0][:, 0] > 0  # (N, T, H, W)
    speeds = set()
    for clip in clips:
        corners = torch.tensor([[int(f.any(1).nonzero()[0]), int(f.any(0).nonzero()[0])] for f in clip])
        steps = corners[1:] - corners[:-1]
        assert (steps == steps[0]).all()  # a straight line at a constant speed
        speeds.add(int(steps[0].abs().max()))
    assert speeds == {2, 3}


def test_moving_digits_noise_is_gaussian_pixel_noise_clipped_to_the_pixel_range():
    """The same generator seed draws the same clips before the noise, so the noise-free clips show where the
    background is; there the pixels are round(255 * clip(noise * z, 0, 1)), z standard normal: half of them 0 and
    their mean noise * E[max(z, 0)] = noise / sqrt(2 pi)."""
    noise = 0.2
    base = ["data=moving_digits", "data.num_samples=50", "data.frames=4"]
    clean = moving_digits.render(data_cfg(*base))[0]
    noisy = moving_digits.render(data_cfg(*base, f"data.noise={noise}"))[0]
    background = noisy[clean == 0].double() / 255
    assert float((background == 0).double().mean()) == pytest.approx(0.5, abs=0.02)
    assert float(background.mean()) == pytest.approx(noise / math.sqrt(2 * math.pi), rel=0.03)


@pytest.mark.parametrize("noise", [0.0, 0.5])
def test_synthetic_samples_are_their_class_pattern_plus_noise_of_that_spread(noise):
    s = load_data(data_cfg("data=synthetic", "data.input_shape=[2,6,6]", "data.num_classes=4", "data.num_samples=2000",
                           f"data.noise={noise}"))
    x, y = s.train_x, s.train_y
    deviations = torch.cat([x[y == c] - x[y == c].mean(0) for c in range(4)])
    assert float(deviations.std()) == pytest.approx(noise, abs=0.01)
    patterns = torch.stack([x[y == c].mean(0) for c in range(4)])
    assert float(patterns.std()) > 0.5  # the classes differ by their (unit-variance) patterns
