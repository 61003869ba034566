"""On-device batch augmentation: each operation against a naive or torchvision reference, per-sample randomness,
seeding, 1D/2D/3D inputs, configuration errors, and every data config's recipe."""
import itertools

import pytest
import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from cnnrun import ConfigError, compose
from cnnrun.config import CONFIG_DIR, to_plain
from cnnrun.data.augment import AUGMENTATIONS, affine_theta, apply_affine, build_augment


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def run(spec, x, bounds=(0.0, 1.0), seed=0):
    return build_augment(spec, x.shape[1:], bounds)(x.clone(), gen(seed))


def windows(img: torch.Tensor, p: int, mode="constant"):
    """Every crop of ``img``'s size from ``img`` padded by p (naive: slicing at each offset)."""
    dims = img.shape[1:]
    padded = F.pad(img[None], [p] * (2 * len(dims)), mode=mode)[0]
    for off in itertools.product(range(2 * p + 1), repeat=len(dims)):
        yield off, padded[(slice(None), *(slice(o, o + s) for o, s in zip(off, dims)))]


@pytest.mark.parametrize("shape", [(2, 40), (3, 9, 11)])
def test_crop_is_a_window_of_the_padded_sample_with_every_offset_used(shape):
    x = torch.rand(300, *shape)
    out = run({"crop": {"padding": 2}}, x)
    seen = set()
    for i in range(len(x)):
        match = [off for off, w in windows(x[i], 2) if torch.equal(w, out[i])]
        assert match, i
        seen.add(match[0])
    assert len(seen) == 5 ** (len(shape) - 1)  # all offsets drawn (per-sample parameters)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular", "zeros"])
def test_crop_of_clips_shifts_every_frame_alike_and_pads_as_asked(mode):
    x = torch.rand(20, 2, 4, 8, 8)
    out = run({"crop": {"padding": 3, "padding_mode": mode}}, x)
    for i in range(len(x)):
        images = x[i].reshape(8, 8, 8)  # (C*T, H, W): one crop for all frames and channels
        ref = windows(images, 3, "constant" if mode == "zeros" else mode)
        assert any(torch.equal(w, out[i].reshape(8, 8, 8)) for _, w in ref)
    signal = torch.rand(30, 2, 9)
    out = run({"crop": {"padding": 4, "padding_mode": mode}}, signal)
    for i in range(len(signal)):
        ref = windows(signal[i], 4, "constant" if mode == "zeros" else mode)
        assert any(torch.equal(w, out[i]) for _, w in ref)


def test_flips_mirror_the_chosen_samples_with_probability_p():
    x = torch.rand(2000, 1, 4, 5)
    out = run({"hflip": {"p": 0.3}}, x)
    flipped = torch.tensor([torch.equal(o, xi.flip(-1)) for o, xi in zip(out, x)])
    kept = torch.tensor([torch.equal(o, xi) for o, xi in zip(out, x)])
    assert bool((flipped ^ kept).all())
    assert 0.25 < float(flipped.float().mean()) < 0.35
    out = run({"vflip": {"p": 1.0}}, x[:10])
    assert torch.equal(out, x[:10].flip(-2))
    signal = torch.rand(3, 2, 7)
    assert torch.equal(run({"hflip": {"p": 1.0}}, signal), signal.flip(-1))  # time reversal for 1D


def test_affine_matches_torchvision_per_sample():
    torch.manual_seed(0)
    x = torch.rand(6, 3, 13, 17)
    angle, scale = torch.empty(6).uniform_(-40, 40), torch.empty(6).uniform_(0.7, 1.3)
    tx, ty, shear = torch.empty(6).uniform_(-3, 3), torch.empty(6).uniform_(-2, 2), torch.empty(6).uniform_(-20, 20)
    ours = apply_affine(x, affine_theta(angle, tx, ty, scale, shear, 13, 17))
    for i in range(6):
        ref = TF.affine(x[i], angle=float(angle[i]), translate=[float(tx[i]), float(ty[i])], scale=float(scale[i]),
                        shear=[float(shear[i]), 0.0], interpolation=TF.InterpolationMode.BILINEAR)
        torch.testing.assert_close(ours[i], ref, atol=1e-5, rtol=0)


def test_random_affine_stays_within_its_ranges():
    x = torch.zeros(64, 1, 21, 21)
    x[:, :, 10, 10] = 1.0  # a dot at the centre: rotation and scale leave it there, translation moves it
    out = run({"affine": {"degrees": 30, "translate": 0.1}}, x)
    rows, cols = (out[:, 0] > 0.2).nonzero(as_tuple=True)[1:]
    assert rows.numel() and (rows - 10).abs().max() <= 3 and (cols - 10).abs().max() <= 3
    assert (rows != 10).any() or (cols != 10).any()
    assert torch.equal(run({"affine": {}}, x), x)  # the defaults are the identity
    clips = torch.rand(4, 1, 3, 9, 9)
    rotated = run({"affine": {"degrees": [90, 90]}}, clips)  # (an exact quarter turn: torchvision's direction)
    torch.testing.assert_close(rotated, torch.rot90(clips, -1, dims=(-2, -1)), atol=1e-5, rtol=0)


def test_cutout_and_erasing_blank_one_box_per_sample():
    x = torch.rand(400, 3, 16, 16) + 1.0  # no pixel equals the fill value
    out = run({"cutout": {"size": 6, "value": 0.0}}, x, bounds=None)
    for i in range(len(x)):
        mask = (out[i] == 0).all(0)
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        assert mask.sum() == len(rows) * len(cols)  # a box, and nothing else touched
        assert 3 <= len(rows) <= 6 and 3 <= len(cols) <= 6  # clipped at the border by at most half its size
        assert torch.equal(out[i][:, ~mask], x[i][:, ~mask])
    areas = []
    out = run({"erasing": {"p": 0.5, "scale": [0.1, 0.2], "ratio": [0.5, 2.0], "value": -1.0}}, x, bounds=None)
    for i in range(len(x)):
        mask = (out[i] == -1).all(0)
        if mask.any():
            rows, cols = mask.any(1).sum(), mask.any(0).sum()
            assert mask.sum() == rows * cols and 0.5 / 1.5 <= float(rows / cols) <= 2.0 * 1.5
            areas.append(float(mask.sum()) / 256)
    assert 0.4 < len(areas) / len(x) < 0.6
    assert 0.1 * 0.7 <= min(areas) and max(areas) <= 0.2 * 1.3  # rounding of the box sides
    signal = torch.rand(10, 1, 30) + 1
    segments = (run({"cutout": {"size": 5}}, signal, bounds=None) == 0).sum(-1)
    assert ((segments >= 3) & (segments <= 5)).all()


def _factor(out, x, base):
    """f in out = f * x + (1 - f) * base, from the unclipped pixel farthest from the base."""
    d = (x - base).flatten()
    free = ((out > 0) & (out < 1)).flatten()
    k = int((d.abs() * free).argmax())
    return float(((out - base).flatten()[k]) / d[k])


def test_jitter_matches_torchvision_with_the_drawn_factors():
    torch.manual_seed(1)
    x = torch.rand(40, 3, 8, 8) * 0.5 + 0.25
    out = run({"jitter": {"brightness": 0.4}}, x)
    for o, xi in zip(out, x):
        f = _factor(o, xi, torch.zeros(()))
        assert 0.6 - 1e-5 <= f <= 1.4 + 1e-5
        torch.testing.assert_close(o, TF.adjust_brightness(xi, f), atol=1e-5, rtol=0)
    out = run({"jitter": {"contrast": 0.5}}, x)
    for o, xi in zip(out, x):
        mean = TF.rgb_to_grayscale(xi).mean()
        f = _factor(o, xi, mean)
        assert 0.5 - 1e-4 <= f <= 1.5 + 1e-4
        torch.testing.assert_close(o, TF.adjust_contrast(xi, f), atol=1e-5, rtol=0)
    out = run({"jitter": {"saturation": 0.5}}, x)
    for o, xi in zip(out, x):
        f = _factor(o, xi, TF.rgb_to_grayscale(xi))
        torch.testing.assert_close(o, TF.adjust_saturation(xi, f), atol=1e-5, rtol=0)
    assert float(run({"jitter": {"brightness": 5.0}}, x).max()) <= 1.0  # images stay in [0, 1]


def test_noise_has_the_asked_spread_and_probability():
    x = torch.full((500, 1, 16, 16), 0.5)
    out = run({"noise": {"std": 0.1, "p": 0.5}}, x)
    noisy = (out != x).flatten(1).any(1)
    assert 0.43 < float(noisy.float().mean()) < 0.57
    assert float((out[noisy] - 0.5).std()) == pytest.approx(0.1, rel=0.03)
    assert float(run({"noise": {"std": 2.0}}, x).abs().max()) <= 1.0  # clipped for images
    assert float(run({"noise": {"std": 2.0}}, x, bounds=None).abs().max()) > 1.0  # not for unbounded signals


def test_augmentation_is_seeded_and_applied_in_order():
    x = torch.rand(8, 3, 12, 12)
    spec = {"crop": {"padding": 2}, "hflip": {}, "affine": {"degrees": 10}, "cutout": {"size": 3}, "noise": {}}
    assert torch.equal(run(spec, x, seed=5), run(spec, x, seed=5))
    assert not torch.equal(run(spec, x, seed=5), run(spec, x, seed=6))
    g = gen(3)
    first = run({"crop": {"padding": 2}}, x, seed=3)
    build_augment({"crop": {"padding": 2}}, x.shape[1:])(x, g)
    assert torch.equal(first, build_augment({"crop": {"padding": 2}}, x.shape[1:])(x, gen(3)))
    assert not torch.equal(first, build_augment({"crop": {"padding": 2}}, x.shape[1:])(x, g))  # the stream moves on


@pytest.mark.parametrize("spec,shape,key,message", [
    ({"crops": {}}, (1, 8, 8), "data.augment.crops", "unknown augmentation 'crops'; did you mean 'crop'?"),
    ({"crop": {"pading": 4}}, (1, 8, 8), "data.augment.crop.pading", "unknown argument 'pading'; did you mean "
                                                                       "'padding'"),
    ({"crop": {"padding": -1}}, (1, 8, 8), "data.augment.crop.padding", "must be an integer >= 0"),
    ({"hflip": {"p": 1.5}}, (1, 8, 8), "data.augment.hflip.p", "must be a probability"),
    ({"affine": {"degrees": 5}}, (1, 40), "data.augment.affine", "works on 2D images and 3D clips, not on 1D"),
    ({"vflip": {}}, (1, 40), "data.augment.vflip", "not on 1D signals"),
    ({"jitter": {"saturation": 0.2}}, (1, 8, 8), "data.augment.jitter.saturation", "needs RGB inputs"),
    ({"erasing": {"scale": [0.5, 0.1]}}, (3, 8, 8), "data.augment.erasing.scale", "low <= high"),
    ({"crop": {"padding": 8, "padding_mode": "reflect"}}, (3, 8, 8), "data.augment.crop.padding", "reflect"),
    ({"crop": 4}, (1, 8, 8), "data.augment.crop", "takes a mapping of arguments"),
    ([{"crop": {}}], (1, 8, 8), "data.augment", "must be a mapping"),
])
def test_bad_augmentation_names_the_key(spec, shape, key, message):
    with pytest.raises(ConfigError) as info:
        build_augment(spec, shape)
    assert info.value.path == key and message in info.value.message


def test_data_config_checks_augment_before_loading():
    from cnnrun.data import check_data_config

    cfg = to_plain(compose(["data.augment={hflp: {p: 0.5}}"]))["data"]
    with pytest.raises(ConfigError, match=r"^data\.augment\.hflp: unknown augmentation 'hflp'; did you mean "):
        check_data_config(cfg)


DATA_CONFIGS = sorted(p.stem for p in (CONFIG_DIR / "data").glob("*.yaml"))


@pytest.mark.parametrize("name", DATA_CONFIGS)
def test_every_data_config_has_a_working_recipe(name):
    extra = ["data.root=/nonexistent", "data.num_classes=3", "data.channels=3"] if name == "image_folder" else []
    data = to_plain(compose([f"data={name}", *extra, "data.augment=${data.augment_recipe}"]))["data"]
    assert data["augment"] == data["augment_recipe"] and "augment_recipe" in data
    for key in ("input_shape", "num_classes", "batch_size", "val_fraction", "train_fraction", "augment",
                "imbalance", "balance"):
        assert key in data, key
    augment = build_augment(data["augment"], data["input_shape"], (0.0, 1.0))
    x = torch.rand(4, *data["input_shape"])
    assert augment(x, gen()).shape == x.shape
    if data["input_shape"][0] in (1, 3) and len(data["input_shape"]) == 3 and name not in ("cifar10", "cifar100",
                                                                                           "fashion_mnist",
                                                                                           "image_folder"):
        assert "hflip" not in (data["augment"] or {})  # digits and characters are not mirrored


def test_registry_documents_every_augmentation():
    from cnnrun.data.augment import describe

    info = describe()
    assert set(info) == set(AUGMENTATIONS) >= {"crop", "hflip", "vflip", "affine", "cutout", "erasing", "jitter",
                                               "noise"}
    assert all(v["doc"] and v["ranks"] for v in info.values())


@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
def test_every_augmentation_runs_on_the_ranks_it_supports_and_refuses_the_others(name):
    cls = AUGMENTATIONS.get(name).builder
    args = {"jitter": {"brightness": 0.3, "contrast": 0.3, "saturation": 0.3}, "affine": {"degrees": 20},
            "cutout": {"size": 2}}.get(name, {})
    for shape in ((3, 12), (3, 6, 7), (3, 4, 6, 7)):
        rank = len(shape) - 1
        if rank in cls.ranks:
            x = torch.rand(5, *shape)
            out = build_augment({name: args}, shape, (0.0, 1.0))(x, gen())
            assert out.shape == x.shape and out.dtype == x.dtype and torch.isfinite(out).all()
        else:
            with pytest.raises(ConfigError, match=rf"^data\.augment\.{name}: works on "):
                build_augment({name: args}, shape)
