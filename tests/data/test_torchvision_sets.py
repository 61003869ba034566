"""MNIST, Fashion-MNIST, KMNIST, CIFAR-10/100 and SVHN read for real, through torchvision, from fake roots written in
the on-disk formats torchvision expects (no network): pixels, labels, official test splits, errors."""
import numpy as np
import pytest
import torch
import torchvision.datasets.cifar as tv_cifar
import torchvision.datasets.svhn as tv_svhn

from cnnrun import ConfigError, compose
from cnnrun.config import to_plain
from cnnrun.data import check_data_config, load_data
from cnnrun.data.loader import BatchTransform
from tests.conftest import run_cli
from tests.data import fakes


@pytest.fixture
def no_checksums(monkeypatch):
    """Fake files cannot match the real files' MD5 sums: check presence only (everything else is torchvision's)."""
    monkeypatch.setattr(tv_cifar, "check_integrity", fakes.presence_only)
    monkeypatch.setattr(tv_svhn, "check_integrity", fakes.presence_only)


def data_cfg(name, root, *overrides):
    return to_plain(compose([f"data={name}", f"data.root={root}", *overrides]))["data"]


def rows(x: torch.Tensor) -> set[bytes]:
    return {r.numpy().tobytes() for r in x}


def check_official_split(s, written):
    """Train + val are the written training set (disjoint, by content), test is the written test set, in order."""
    x, y, tx, ty = written
    assert torch.equal(s.test_x, torch.from_numpy(tx).reshape(s.test_x.shape))
    assert s.test_y.tolist() == ty.astype(int).tolist()
    assert s.train_x.dtype == torch.uint8 and s.value_range == (0.0, 1.0)
    train, val = rows(s.train_x), rows(s.val_x)
    assert not train & val and train | val == rows(torch.from_numpy(x).reshape(len(x), *s.input_shape))
    assert not (train | val) & rows(s.test_x)
    by_image = {xi.tobytes(): int(yi) for xi, yi in zip(torch.from_numpy(x).reshape(len(x), *s.input_shape).numpy(),
                                                         y)}
    assert all(by_image[r.numpy().tobytes()] == int(label) for r, label in zip(s.val_x, s.val_y))
    assert all(by_image[r.numpy().tobytes()] == int(label) for r, label in zip(s.train_x, s.train_y))


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "kmnist"])
def test_mnist_family_reads_idx_files(tmp_path, name):
    written = fakes.fake_mnist(tmp_path, name, n_train=200, n_test=30)
    s = load_data(data_cfg(name, tmp_path))
    assert s.input_shape == (1, 28, 28) and s.sizes() == {"train": 180, "val": 20, "test": 30}
    check_official_split(s, written)
    assert np.bincount(s.val_y.numpy(), minlength=10).max() <= 3  # stratified: 20 over 10 classes


def test_cifar10_and_cifar100_read_python_pickles(tmp_path, no_checksums):
    written = fakes.fake_cifar(tmp_path, 10, n_train=200, n_test=40)
    s = load_data(data_cfg("cifar10", tmp_path))
    assert s.input_shape == (3, 32, 32) and s.classes == [f"class{i}" for i in range(10)]
    check_official_split(s, written)
    written = fakes.fake_cifar(tmp_path, 100, n_train=400, n_test=120)
    s = load_data(data_cfg("cifar100", tmp_path, "data.val_fraction=0.25"))
    assert s.sizes() == {"train": 300, "val": 100, "test": 120} and s.num_classes == 100
    check_official_split(s, written)


def test_svhn_reads_mat_files_and_maps_label_10_to_0(tmp_path, no_checksums):
    written = fakes.fake_svhn(tmp_path, n_train=200, n_test=30)
    s = load_data(data_cfg("svhn", tmp_path))
    check_official_split(s, written)
    assert 0 in s.test_y.tolist() and 10 not in s.test_y.tolist()


def test_the_split_is_fixed_by_split_seed_and_train_fraction_is_stratified(tmp_path):
    fakes.fake_mnist(tmp_path, "mnist", n_train=300, n_test=20)
    a, b = load_data(data_cfg("mnist", tmp_path)), load_data(data_cfg("mnist", tmp_path))
    c = load_data(data_cfg("mnist", tmp_path, "data.split_seed=1"))
    assert torch.equal(a.val_x, b.val_x) and not torch.equal(a.val_x, c.val_x)
    half = load_data(data_cfg("mnist", tmp_path, "data.train_fraction=0.5"))
    assert len(half.train_y) == 135 and rows(half.train_x) <= rows(a.train_x)
    assert torch.equal(half.val_x, a.val_x) and torch.equal(half.test_x, a.test_x)
    counts = np.array(a.class_counts()) / 2
    assert np.abs(np.array(half.class_counts()) - counts).max() <= 1


def test_normalisation_statistics_are_the_training_splits(tmp_path, no_checksums):
    fakes.fake_cifar(tmp_path, 10, n_train=100, n_test=20)
    s = load_data(data_cfg("cifar10", tmp_path))
    pixels = s.train_x.double() / 255
    assert s.stats["mean"] == pytest.approx(pixels.mean(dim=(0, 2, 3)).tolist(), abs=1e-6)
    assert s.stats["std"] == pytest.approx(pixels.transpose(0, 1).reshape(3, -1).std(1).tolist(), abs=1e-6)
    prepared = BatchTransform.for_splits(s)(s.test_x[:4])
    expected = (s.test_x[:4].double() / 255 - torch.tensor(s.stats["mean"]).view(1, 3, 1, 1)) / \
        torch.tensor(s.stats["std"]).view(1, 3, 1, 1)
    torch.testing.assert_close(prepared, expected.float(), atol=1e-5, rtol=1e-5)


def test_missing_files_name_the_root_the_path_and_the_download_command(tmp_path, monkeypatch):
    with pytest.raises(ConfigError) as info:
        load_data(data_cfg("cifar10", tmp_path / "nothing"))
    err = info.value
    assert err.path == "data.root"
    assert str(tmp_path / "nothing" / "cifar-10-batches-py") in err.message and "data_batch_1" in err.message
    assert "python -m cnnrun data=cifar10 data.download=true" in err.message
    monkeypatch.setenv("CNNRUN_DATA", str(tmp_path / "shared"))
    cfg = to_plain(compose(["data=mnist"]))["data"]
    assert cfg["root"] == str(tmp_path / "shared") and cfg["download"] is False
    with pytest.raises(ConfigError, match=r"expected .*t10k-images-idx3-ubyte.* in .*shared/MNIST/raw"):
        load_data(cfg)


def test_a_failed_download_is_a_config_error(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    def offline(self):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(tvd.MNIST, "download", offline)
    with pytest.raises(ConfigError, match=r"^data\.download: downloading mnist into .* failed: OSError: Temporary"):
        load_data(data_cfg("mnist", tmp_path, "data.download=true"))


def test_corrupted_files_are_reported_with_the_way_out(tmp_path):
    fakes.fake_cifar(tmp_path, 10, n_train=50, n_test=10)  # real checksums are checked: these cannot pass
    with pytest.raises(ConfigError, match=r"^data\.root: the cifar10 files in .* cannot be read .*download again"):
        load_data(data_cfg("cifar10", tmp_path))


@pytest.mark.parametrize("override,key", [
    ("data.input_shape=[3,28,28]", "data.input_shape"), ("data.input_shape=[1,32,32]", "data.input_shape"),
    ("data.num_classes=12", "data.num_classes"), ("data.download=maybe", "data.download"),
])
def test_shape_and_class_mismatches_are_caught_before_loading(tmp_path, override, key):
    with pytest.raises(ConfigError) as info:  # a type error is refused while composing, a range while checking
        check_data_config(data_cfg("mnist", tmp_path, override))
    assert info.value.path == key
    if "input_shape" in override:
        assert "[1, 28, 28]" in info.value.message


def test_cli_reports_absent_data_in_one_line(tmp_path):
    proc = run_cli(["data=mnist", f"data.root={tmp_path / 'empty'}", "logger=none"], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    error = [line for line in lines if line.startswith("error: ")]
    assert len(error) == 1 and error[0].startswith("error: data.root: mnist not found")
    assert "python -m cnnrun data=mnist data.download=true" in error[0] and "Traceback" not in proc.stderr


def test_missing_files_are_refused_before_lightning_for_a_run_that_reads_them_only(tmp_path):
    """A training or test run is told its data set is not on disk by the checks before Lightning loads; a summary
    (which reads no data) of the same config is not refused."""
    from cnnrun.run import check_with_torch

    plain = to_plain(compose(["data=cifar10", f"data.root={tmp_path}", "mode=summary"]))
    check_with_torch(plain)
    for mode in ("train", "test"):
        plain["mode"] = mode
        with pytest.raises(ConfigError) as err:
            check_with_torch(plain)
        assert err.value.path == "data.root" and "cifar10 not found" in err.value.message
