"""Generated data sets: MNIST-1D (the mnist1d package, offline, global random state isolated) and moving digits
(3D clips)."""
import random

import numpy as np
import pytest
import torch

from cnnrun import ConfigError, compose
from cnnrun.config import to_plain
from cnnrun.data import check_data_config, load_data, mnist1d, moving_digits


def data_cfg(name, *overrides):
    return to_plain(compose([f"data={name}", *overrides]))["data"]


# -- MNIST-1D ----------------------------------------------------------------------------------------------------
def test_mnist1d_is_the_packages_data_with_its_official_test_split():
    from mnist1d.data import get_dataset_args, make_dataset

    cfg = data_cfg("mnist1d")
    assert (cfg["num_samples"], cfg["generator_seed"], cfg["input_shape"]) == (5000, 42, [1, 40])  # the published set
    s = load_data({**cfg, "num_samples": 600})
    assert s.input_shape == (1, 40) and s.sizes() == {"train": 432, "val": 48, "test": 120}  # 80/20, then 10%
    state = np.random.get_state(), random.getstate()
    args = get_dataset_args()
    args.num_samples = 600
    try:
        ref = make_dataset(args)  # the package's own call (it reseeds the global generators)
    finally:
        np.random.set_state(state[0])
        random.setstate(state[1])
    torch.testing.assert_close(s.test_x[:, 0], torch.from_numpy(ref["x_test"]).float())
    assert s.test_y.tolist() == ref["y_test"].tolist()
    train_rows = {r.tobytes() for r in torch.cat([s.train_x, s.val_x])[:, 0].numpy()}
    assert train_rows == {r.tobytes() for r in ref["x"].astype(np.float32)}
    assert not {r.tobytes() for r in s.train_x[:, 0].numpy()} & {r.tobytes() for r in s.val_x[:, 0].numpy()}
    assert s.value_range is None and s.stats == {}  # already standardised by the generator


def test_generating_mnist1d_leaves_the_global_random_state_alone():
    np.random.seed(123)
    random.seed(123)
    expected = np.random.rand(3).tolist(), random.random()
    np.random.seed(123)
    random.seed(123)
    data = mnist1d.generate(mnist1d.dataset_args(200, 7, False))
    assert data["x"].shape == (160, 40) and data["x_test"].shape == (40, 40)
    assert (np.random.rand(3).tolist(), random.random()) == expected


def test_mnist1d_disk_cache_is_written_under_root_and_reused(tmp_path, monkeypatch):
    cfg = data_cfg("mnist1d", f"data.root={tmp_path}", "data.disk_cache=true", "data.num_samples=300",
                   "data.generator_seed=5")
    first = load_data(cfg)
    files = list((tmp_path / "mnist1d").glob("mnist1d_*.npz"))
    assert len(files) == 1
    mnist1d._cached.cache_clear()

    def no_generation(args):
        raise AssertionError("generated again")

    monkeypatch.setattr(mnist1d, "generate", no_generation)
    again = load_data(cfg)
    assert torch.equal(first.train_x, again.train_x) and torch.equal(first.test_x, again.test_x)


@pytest.mark.parametrize("override,key", [
    ("data.input_shape=[1,41]", "data.input_shape"), ("data.num_samples=10", "data.num_samples"),
    ("data.generator_seed=-1", "data.generator_seed"), ("data.disk_cache=maybe", "data.disk_cache"),
])
def test_mnist1d_config_errors(override, key):
    with pytest.raises(ConfigError) as info:  # a type error is refused while composing, a range while checking
        check_data_config(data_cfg("mnist1d", override))
    assert info.value.path == key


# -- moving digits --------------------------------------------------------------------------------------------------
def test_moving_digit_clips_translate_one_glyph_frame_by_frame():
    cfg = data_cfg("moving_digits", "data.num_samples=60", "data.directions=8", "data.speed=[1,2]", "data.frames=6")
    clips, labels, digits, direction = moving_digits.render(cfg)
    assert clips.shape == (60, 1, 6, 32, 32) and clips.dtype == torch.uint8
    assert torch.equal(labels, digits)
    for i in range(60):
        frames = clips[i, 0].float()
        mass = [f.nonzero().float().mean(0) for f in frames]  # the glyph's pixel centroid (row, col)
        step = mass[1] - mass[0]
        dy, dx = moving_digits.DIRECTIONS[int(direction[i])]
        assert torch.sign(step).tolist() == [float(dy), float(dx)]  # it moves the labelled way
        for t in range(1, 6):  # the same glyph, shifted by a constant step each frame, never cut by the border
            shift = (mass[t] - mass[t - 1]).round().long().tolist()
            assert torch.equal(torch.roll(frames[t - 1], shifts=shift, dims=(0, 1)), frames[t])
    assert set(direction.tolist()) == set(range(8))


def test_moving_digits_are_deterministic_and_labelled_by_digit_and_direction():
    a = moving_digits.render(data_cfg("moving_digits", "data.num_samples=40"))
    b = moving_digits.render(data_cfg("moving_digits", "data.num_samples=40"))
    c = moving_digits.render(data_cfg("moving_digits", "data.num_samples=40", "data.generator_seed=1"))
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0])
    cfg = data_cfg("moving_digits", "data.num_samples=200", "data.label=digit_direction", "data.num_classes=40")
    clips, labels, digits, direction = moving_digits.render(cfg)
    assert torch.equal(labels, digits * 4 + direction)
    s = load_data(cfg)
    assert s.num_classes == 40 and s.classes[:5] == ["0-right", "0-left", "0-down", "0-up", "1-right"]
    assert s.input_shape == (1, 16, 32, 32) and sum(s.sizes().values()) == 200


@pytest.mark.parametrize("override,key,message", [
    ("data.size=20", "data.size", "needs a frame of at least 27 pixels"),
    ("data.directions=6", "data.directions", "must be 4"),
    ("data.label=motion", "data.label", "digit, digit_direction"),
    ("data.label=digit_direction", "data.num_classes", "gives 40 classes"),
    ("data.speed=0", "data.speed", "pixels per frame"),
    ("data.noise=2", "data.noise", "in [0, 1]"),
])
def test_moving_digits_config_errors(override, key, message):
    with pytest.raises(ConfigError) as info:
        check_data_config(data_cfg("moving_digits", override))
    assert info.value.path == key and message in info.value.message
