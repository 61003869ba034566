"""image_folder: a generated folder of PNG files, decoded once and cached next to the data, or streamed through
DataLoader workers; fixed validation/test folders; every file error before training."""
import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from cnnrun import ConfigError, compose
from cnnrun.config import to_plain
from cnnrun.data import check_data_config, image_folder, load_data
from cnnrun.data.loader import DeviceLoader
from cnnrun.train.datamodule import DataModule
from tests.data.fakes import write_png_folder

CLASSES = {"cat": 7, "dog": 6, "emu": 8}


def data_cfg(root, *overrides):
    return to_plain(compose(["data=image_folder", f"data.root={root}", "data.num_classes=3", "data.channels=3",
                             "data.image_size=12", "data.test_fraction=0.25", "data.val_fraction=0.2",
                             "data.num_workers=0", *overrides]))["data"]


def by_content(x: torch.Tensor) -> set[bytes]:
    return {r.numpy().tobytes() for r in x}


def test_images_are_decoded_once_into_memory_and_cached(tmp_path, monkeypatch):
    written = write_png_folder(tmp_path / "train", CLASSES, size=(12, 12))
    cfg = data_cfg(tmp_path / "train", "data.cache=memory", "data.normalize=false")
    s = load_data(cfg)
    assert not s.streamed and s.train_x.dtype == torch.uint8 and s.classes == ["cat", "dog", "emu"]
    assert sum(s.sizes().values()) == 21 and s.input_shape == (3, 12, 12)
    expected = {torch.from_numpy(p).permute(2, 0, 1).numpy().tobytes(): ["cat", "dog", "emu"].index(c)
                for p, c in written.values()}
    splits = [(s.train_x, s.train_y), (s.val_x, s.val_y), (s.test_x, s.test_y)]
    got = [by_content(x) for x, _ in splits]
    assert set().union(*got) == set(expected) and sum(len(g) for g in got) == 21  # disjoint, complete
    assert all(expected[xi.numpy().tobytes()] == int(yi) for x, y in splits for xi, yi in zip(x, y))
    cache = list((tmp_path / "train" / ".cnnrun-cache").glob("*.pt"))
    assert len(cache) == 1

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(image_folder, "decode", no_decoding)
    again = load_data(cfg)  # from the cache file: nothing decoded; the cache folder is not a class
    assert torch.equal(again.train_x, s.train_x) and again.classes == s.classes


def test_resizing_and_grey_conversion_follow_torchvision(tmp_path):
    written = write_png_folder(tmp_path / "d", {"a": 2, "b": 2}, size=(20, 14))
    s = load_data(data_cfg(tmp_path / "d", "data.num_classes=2", "data.image_size=8", "data.channels=1",
                           "data.cache=memory", "data.test_fraction=0.5", "data.val_fraction=0.5"))
    assert s.input_shape == (1, 8, 8)
    refs = set()
    for pixels, _ in written.values():
        grey = torch.from_numpy(np.asarray(Image.fromarray(pixels).convert("L")).copy())[None]
        refs.add(TF.center_crop(TF.resize(grey, [8], antialias=True), [8, 8]).numpy().tobytes())
    assert by_content(torch.cat([s.train_x, s.val_x, s.test_x])) == refs  # shorter side to 8, then the centre


def test_streamed_path_gives_the_same_batches_as_the_memory_path(tmp_path):
    write_png_folder(tmp_path / "train", CLASSES, size=(12, 12))
    augment = "data.augment={crop: {padding: 2}, hflip: {}}"
    mem = load_data(data_cfg(tmp_path / "train", "data.cache=memory", augment))
    stream_cfg = data_cfg(tmp_path / "train", "data.cache=none", "data.num_workers=1", augment)
    streamed = load_data(stream_cfg)
    assert streamed.streamed and isinstance(streamed.train_x, image_folder.ImageFiles)
    assert streamed.stats == mem.stats  # the sample covers all 11 training images here
    dm_mem = DataModule(mem, 4, seed=3, data=data_cfg(tmp_path / "train", augment))
    dm_stream = DataModule(streamed, 4, seed=3, data=stream_cfg)
    for dm in (dm_mem, dm_stream):
        dm.setup("fit")
    loader = dm_stream.train_dataloader()
    assert loader.loader.num_workers == 1 and loader.loader.persistent_workers
    for a, b in zip(list(dm_mem.train_dataloader()), list(loader)):
        assert torch.equal(a[1], b[1]) and torch.equal(a[0], b[0])
    for a, b in zip(dm_mem.test_dataloader(), dm_stream.test_dataloader()):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    dm_stream.teardown("fit")
    assert loader.loader._iterator is None  # the persistent workers are stopped


def test_fixed_validation_and_test_folders_are_used_as_given(tmp_path):
    write_png_folder(tmp_path / "train", CLASSES, size=(12, 12), seed=1)
    val = write_png_folder(tmp_path / "val", {"cat": 2, "dog": 2, "emu": 2}, size=(12, 12), seed=2)
    test = write_png_folder(tmp_path / "test", {"cat": 1, "dog": 3, "emu": 1}, size=(12, 12), seed=3)
    s = load_data(data_cfg(tmp_path / "train", f"data.val_root={tmp_path / 'val'}",
                           f"data.test_root={tmp_path / 'test'}", "data.cache=memory"))
    assert s.sizes() == {"train": 21, "val": 6, "test": 5}
    assert s.test_y.tolist() == [0, 1, 1, 1, 2]
    assert by_content(s.val_x) == {torch.from_numpy(p).permute(2, 0, 1).numpy().tobytes() for p, _ in val.values()}
    assert len(by_content(s.test_x)) == len(test)


def test_missing_root_and_empty_class_folder(tmp_path):
    with pytest.raises(ConfigError, match=r"^data\.root: no folder at .*nowhere"):
        load_data(data_cfg(tmp_path / "nowhere"))
    write_png_folder(tmp_path / "d", CLASSES, size=(12, 12))
    (tmp_path / "d" / "fox").mkdir()
    with pytest.raises(ConfigError, match=r"^data\.root: in .*: Found no valid file for the classes fox"):
        load_data(data_cfg(tmp_path / "d", "data.num_classes=4"))
    (tmp_path / "d" / "fox").rmdir()
    (tmp_path / "v" / "cat").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"^data\.val_root: has the classes \['cat'\] but data\.root has"):
        load_data(data_cfg(tmp_path / "d", f"data.val_root={tmp_path / 'v'}"))


@pytest.mark.parametrize("cache", ["memory", "none"])
def test_an_unreadable_image_is_named_before_training(tmp_path, cache):
    write_png_folder(tmp_path / "d", CLASSES, size=(12, 12))
    bad = tmp_path / "d" / "dog" / "broken.png"
    bad.write_bytes(b"this is not a png")
    with pytest.raises(ConfigError) as info:
        load_data(data_cfg(tmp_path / "d", f"data.cache={cache}"))
    assert info.value.path == "data.root" and "broken.png" in info.value.message


def test_auto_cache_streams_what_does_not_fit(tmp_path):
    write_png_folder(tmp_path / "d", CLASSES, size=(12, 12))
    assert not load_data(data_cfg(tmp_path / "d")).streamed
    assert load_data(data_cfg(tmp_path / "d", "data.max_memory_mb=0.001")).streamed


@pytest.mark.parametrize("override,key", [
    ("data.input_shape=[3,16,16]", "data.input_shape"), ("data.channels=2", "data.channels"),
    ("data.image_size=0", "data.image_size"), ("data.cache=disk", "data.cache"), ("data.resize=pad", "data.resize"),
    ("data.num_workers=-1", "data.num_workers"),
])
def test_config_errors_before_loading(tmp_path, override, key):
    with pytest.raises(ConfigError) as info:
        check_data_config(data_cfg(tmp_path, override))
    assert info.value.path == key


def test_the_root_is_required_and_named(tmp_path):
    for overrides in ([], ["data.num_classes=3", "data.channels=3"]):
        with pytest.raises(ConfigError) as info:
            to_plain(compose(["data=image_folder", *overrides]))
        assert str(info.value) == "data.root: has no value ('???' in the config): set it, e.g. data.root=..."
    with pytest.raises(ConfigError, match=r"^data\.root: no folder at .*nowhere"):  # read for num_classes
        to_plain(compose(["data=image_folder", f"data.root={tmp_path / 'nowhere'}"]))


@pytest.mark.parametrize("modes,channels", [(["L"] * 4, 1), (["RGB"] * 4, 3), (["L", "L", "L", "RGB"], 3)])
def test_classes_and_channels_are_read_from_the_folder(tmp_path, modes, channels):
    from torchvision.datasets import ImageFolder

    for i, (name, mode) in enumerate(zip(("ant", "bee", "cow", "yak"), modes)):  # the last file read is the yak's
        write_png_folder(tmp_path / "d", {name: 2}, size=(8, 8), mode=mode, seed=i)
    reference = ImageFolder(str(tmp_path / "d")).classes
    (tmp_path / "d" / ".ipynb_checkpoints").mkdir()  # hidden folders are not classes (ImageFolder would count it)
    data = to_plain(compose(["data=image_folder", f"data.root={tmp_path / 'd'}", "data.image_size=16"]))["data"]
    assert data["num_classes"] == len(reference) == 4
    assert data["channels"] == channels and data["input_shape"] == [channels, 16, 16]
    assert image_folder.folder_num_channels(tmp_path / "d", chunk=3) == channels  # the last chunk counts too


def test_a_run_builds_the_model_for_the_folder_without_num_classes(tmp_path):
    import json

    from cnnrun import run

    write_png_folder(tmp_path / "d", {"a": 2, "b": 1, "c": 1, "d": 1, "e": 2}, size=(20, 20), mode="L")
    run(compose(["data=image_folder", f"data.root={tmp_path / 'd'}", "data.image_size=16", "mode=summary"]),
        output_dir=tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["input_shape"] == [1, 16, 16] and summary["output_shape"] == [5]
    first = summary["layers"][0]
    assert first["type"] == "conv" and first["params"] == 6 * 1 * 5 * 5 + 6  # LeNet-5's C1 on one channel


def test_a_run_trains_on_streamed_images_and_stops_its_workers(tmp_path, quick_cfg, monkeypatch):
    import multiprocessing

    from cnnrun import run

    closed = []
    close = DeviceLoader.close
    monkeypatch.setattr(DeviceLoader, "close", lambda self: (closed.append(self), close(self)))
    write_png_folder(tmp_path / "train", CLASSES, size=(20, 20))
    metrics = run(quick_cfg("data=image_folder", f"data.root={tmp_path / 'train'}", "data.num_classes=3",
                            "data.image_size=16", "data.cache=none", "data.num_workers=1", "data.test_fraction=0.25",
                            "data.val_fraction=0.2", "data.augment=${data.augment_recipe}", "data.balance=sampler",
                            "trainer.max_epochs=2", "logger=none"), output_dir=tmp_path / "run")
    assert 0.0 <= metrics["test/acc"] <= 1.0 and "train_eval/acc" in metrics
    assert len(closed) == 2  # Lightning's teardown stopped the persistent training and validation workers
    assert multiprocessing.active_children() == []
