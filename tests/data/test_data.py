"""Data: digits and synthetic sources, disjoint seeded splits, training-split statistics, the in-memory loader."""
import numpy as np
import pytest
import torch

from cnnrun import ConfigError, compose
from cnnrun.config import to_plain
from cnnrun.data import load_data, stratified_split
from cnnrun.data.loader import BatchTransform, InMemoryLoader


def data_cfg(*overrides):
    return to_plain(compose(list(overrides)))["data"]


def test_digits_are_resized_and_split_disjointly():
    cfg = data_cfg()
    s = load_data({**cfg, "normalize": False})
    assert s.input_shape == (1, 32, 32) and s.num_classes == 10
    assert sum(s.sizes().values()) == 1797
    assert 0.0 <= float(s.train_x.min()) and float(s.train_x.max()) <= 1.0
    # no sample appears in two splits (compare images themselves)
    keys = {name: {x.numpy().tobytes() for x in getattr(s, f"{name}_x")} for name in ("train", "val", "test")}
    assert not keys["train"] & keys["test"] and not keys["train"] & keys["val"] and not keys["val"] & keys["test"]


def test_splits_are_fixed_by_the_seed_and_stratified():
    labels = np.repeat(np.arange(5), 40)
    a = stratified_split(labels, 0.25, 0.2, 1.0, seed=3)
    b = stratified_split(labels, 0.25, 0.2, 1.0, seed=3)
    c = stratified_split(labels, 0.25, 0.2, 1.0, seed=4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[2], c[2])
    train, val, test = a
    assert len(set(train) | set(val) | set(test)) == len(labels) == len(train) + len(val) + len(test)
    assert np.bincount(labels[test]).tolist() == [10] * 5  # 25% of each class
    assert np.bincount(labels[val]).tolist() == [6] * 5
    half = stratified_split(labels, 0.25, 0.2, 0.5, seed=3)
    assert np.array_equal(half[2], test) and set(half[0]) <= set(train)
    assert np.bincount(labels[half[0]]).tolist() == [12] * 5


def test_normalisation_uses_training_statistics_only():
    cfg = data_cfg()
    raw = load_data({**cfg, "normalize": False})
    norm = load_data(cfg)
    assert norm.stats["mean"] == pytest.approx([float(raw.train_x.double().mean())], abs=1e-6)
    assert norm.stats["std"] == pytest.approx([float(raw.train_x.double().std())], abs=1e-6)
    assert torch.equal(norm.train_x, raw.train_x)  # stored as loaded: batches are standardised on the device
    assert float(BatchTransform.for_splits(norm)(norm.train_x).mean()) == pytest.approx(0.0, abs=1e-5)
    expected_test = (raw.test_x - norm.stats["mean"][0]) / norm.stats["std"][0]
    torch.testing.assert_close(BatchTransform.for_splits(norm)(norm.test_x), expected_test)


def test_synthetic_data_has_any_shape():
    s = load_data(data_cfg("data=synthetic", "data.input_shape=[2,5,6,7]", "data.num_classes=3",
                           "data.num_samples=90"))
    assert s.input_shape == (2, 5, 6, 7) and sum(s.sizes().values()) == 90


@pytest.mark.parametrize("override,key", [
    ("data.train_fraction=0", "data.train_fraction"), ("data.train_fraction=1.5", "data.train_fraction"),
    ("data.val_fraction=1.0", "data.val_fraction"), ("data.batch_size=0", "data.batch_size"),
    ("data.num_classes=5", "data.num_classes"), ("data.input_shape=[1,32]", "data.input_shape"),
    ("data.name=digitz", "data.name"),
])
def test_bad_data_config_names_the_key(override, key):
    with pytest.raises(ConfigError, match=rf"^{key}: "):
        load_data(data_cfg(override))


def test_loader_shuffles_per_epoch_reproducibly():
    x, y = torch.arange(10).float().view(10, 1), torch.arange(10)
    epoch = {"n": 0}
    loader = InMemoryLoader(x, y, batch_size=4, shuffle=True, seed=7, epoch=lambda: epoch["n"])
    assert len(loader) == 3
    first = torch.cat([b[1] for b in loader])
    assert sorted(first.tolist()) == list(range(10))
    assert torch.equal(first, torch.cat([b[1] for b in loader]))  # same epoch, same order
    epoch["n"] = 1
    second = torch.cat([b[1] for b in loader])
    assert not torch.equal(first, second) and sorted(second.tolist()) == list(range(10))
    for bx, by in loader:
        assert torch.equal(bx.view(-1).long(), by)  # inputs stay paired with their labels
    plain = InMemoryLoader(x, y, batch_size=4)
    assert [b[1].tolist() for b in plain] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert len(InMemoryLoader(x, y, batch_size=4, drop_last=True)) == 2
