"""The generalization knobs on the data side: long-tailed training sets, class-balanced sampling and loss weights,
augmentation of training batches only; and split hygiene for every source."""
import numpy as np
import pytest
import torch

from cnnrun import ConfigError, compose
from cnnrun.config import to_plain
from cnnrun.data import load_data
from cnnrun.data.loader import BatchTransform, InMemoryLoader, epoch_order, one_cpu_thread
from cnnrun.data.splits import long_tail_counts
from cnnrun.train.datamodule import DataModule
from tests.data import fakes


def data_cfg(*overrides):
    return to_plain(compose(list(overrides)))["data"]


def reference_long_tail(img_max: int, cls_num: int, imb_factor: float) -> list[int]:
    """get_img_num_per_cls of the long-tailed CIFAR code (Cao et al. 2019, LDAM-DRW; imb_factor = 1 / ratio)."""
    return [int(img_max * (imb_factor ** (i / (cls_num - 1.0)))) for i in range(cls_num)]


@pytest.mark.parametrize("ratio", [10, 100, 2.5])
def test_long_tail_profile_is_the_literatures(ratio):
    assert long_tail_counts([5000] * 10, ratio) == reference_long_tail(5000, 10, 1 / ratio)
    assert long_tail_counts([500] * 100, ratio) == reference_long_tail(500, 100, 1 / ratio)


def test_imbalance_makes_only_the_training_split_long_tailed():
    base = load_data(data_cfg())
    s = load_data(data_cfg("data.imbalance=10"))
    counts = s.class_counts()
    assert counts[0] == base.class_counts()[0] and counts[0] / counts[-1] == pytest.approx(10, rel=0.1)
    assert counts == sorted(counts, reverse=True)
    assert counts == long_tail_counts(base.class_counts(), 10)
    assert torch.equal(s.val_x, base.val_x) and torch.equal(s.test_x, base.test_x)  # unchanged, balanced
    kept = {r.numpy().tobytes() for r in s.train_x}
    assert kept <= {r.numpy().tobytes() for r in base.train_x}
    assert torch.equal(load_data(data_cfg("data.imbalance=10")).train_x, s.train_x)  # fixed by split_seed
    assert load_data(data_cfg("data.imbalance=1")).class_counts() == base.class_counts()


@pytest.mark.parametrize("override,key", [
    ("data.imbalance=0.5", "data.imbalance"), ("data.balance=oversample", "data.balance"),
    ("data.train_fraction=0", "data.train_fraction"), ("data.train_fraction=1.01", "data.train_fraction"),
    ("data.split_seed=-2", "data.split_seed"),
])
def test_knob_errors_name_the_key(override, key):
    with pytest.raises(ConfigError) as info:
        load_data(data_cfg(override))
    assert info.value.path == key


def test_class_balanced_sampling_is_seeded_and_evens_out_the_classes():
    s = load_data(data_cfg("data.imbalance=20", "data.balance=sampler"))
    dm = DataModule(s, 32, seed=4, data=data_cfg("data.imbalance=20", "data.balance=sampler"))
    dm.setup("fit")
    loader = dm.train_dataloader()
    labels = torch.cat([y for _, y in loader])
    assert len(labels) == len(s.train_y)  # one epoch = as many draws as training samples
    share = torch.bincount(labels, minlength=10).float() / len(labels)
    natural = torch.tensor(s.class_counts(), dtype=torch.float) / len(s.train_y)
    assert float(natural.max() / natural.min()) > 15 and float(share.max() / share.min()) < 2.0
    assert torch.equal(labels, torch.cat([y for _, y in loader]))  # same epoch, same draw
    weights = 1.0 / torch.bincount(s.train_y).double()[s.train_y]
    assert torch.equal(loader.order(), epoch_order(len(s.train_y), 4, 0, weights))


def test_loss_weights_are_sklearns_balanced_weights():
    from sklearn.utils.class_weight import compute_class_weight

    cfg = data_cfg("data.imbalance=10", "data.balance=loss_weights")
    s = load_data(cfg)
    dm = DataModule(s, 32, seed=0, data=cfg)
    ref = compute_class_weight("balanced", classes=np.arange(10), y=s.train_y.numpy())
    assert dm.class_weights.dtype == torch.float32
    np.testing.assert_allclose(dm.class_weights.numpy(), ref, rtol=1e-6)
    assert DataModule(s, 32, seed=0, data=data_cfg()).class_weights is None


def test_training_uses_the_class_weights(quick_cfg, tmp_path, monkeypatch):
    from cnnrun import run
    from cnnrun.train import module as module_mod

    seen = []
    make = module_mod.make_objective

    def spying(cfg):
        objective = make(cfg)

        def loss(logits, y, weight=None):
            seen.append(None if weight is None else weight.detach().clone())
            return objective(logits, y, weight)
        return loss

    monkeypatch.setattr(module_mod, "make_objective", spying)
    run(quick_cfg("data.imbalance=10", "data.balance=loss_weights", "trainer.max_epochs=1",
                  "trainer.limit_train_batches=2", "logger=none"), output_dir=tmp_path)
    s = load_data(data_cfg("data.imbalance=10"))
    from sklearn.utils.class_weight import compute_class_weight

    ref = compute_class_weight("balanced", classes=np.arange(10), y=s.train_y.numpy())
    assert len(seen) == 2 and all(w is not None for w in seen)
    np.testing.assert_allclose(seen[0].numpy(), ref, rtol=1e-6)


def test_augmentation_reaches_training_batches_only():
    cfg = data_cfg("data.augment={crop: {padding: 4}, noise: {std: 0.2}}")
    s = load_data(cfg)
    dm = DataModule(s, 64, seed=0, data=cfg)
    dm.setup("fit")
    prepare = BatchTransform.for_splits(s)  # floats, standardised: what the model sees without augmentation
    for loader, x in ((dm.val_dataloader(), s.val_x), (dm.test_dataloader(), s.test_x),
                      (dm.train_eval_dataloader(), s.train_x)):
        torch.testing.assert_close(torch.cat([b for b, _ in loader]), prepare(x))  # exactly as stored
    train = dm.train_dataloader()
    order = train.order()
    xb, yb = next(iter(train))
    assert torch.equal(yb, s.train_y[order[:64]])
    plain = prepare(s.train_x[order[:64]])
    assert not torch.allclose(xb, plain) and xb.shape == plain.shape
    assert torch.equal(next(iter(train))[0], xb)  # seeded per (seed, epoch)
    other = DataModule(s, 64, seed=1, data=cfg)
    other.setup("fit")
    assert not torch.equal(next(iter(other.train_dataloader()))[0], xb)


def test_loader_order_and_transform_compose():
    x, y = torch.arange(10).float().view(10, 1, 1), torch.arange(10)
    loader = InMemoryLoader(x, y, 4, shuffle=True, seed=2, transform=BatchTransform([1.0], [2.0]))
    for xb, yb in loader:
        assert torch.equal(xb.view(-1), (yb.float() - 1.0) / 2.0)


SOURCES = ["digits", "synthetic", "mnist", "cifar10", "svhn", "mnist1d", "moving_digits", "image_folder"]


@pytest.fixture
def roots(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as tv_cifar
    import torchvision.datasets.svhn as tv_svhn

    monkeypatch.setattr(tv_cifar, "check_integrity", fakes.presence_only)
    monkeypatch.setattr(tv_svhn, "check_integrity", fakes.presence_only)
    fakes.fake_mnist(tmp_path, "mnist", n_train=200, n_test=30)
    fakes.fake_cifar(tmp_path, 10, n_train=200, n_test=30)
    fakes.fake_svhn(tmp_path, n_train=200, n_test=30)
    fakes.write_png_folder(tmp_path / "images", {"a": 10, "b": 10, "c": 10}, size=(16, 16))
    return tmp_path


@pytest.mark.parametrize("name", SOURCES)
def test_splits_never_overlap_and_are_fixed_by_the_seed(name, roots):
    extra = {"image_folder": [f"data.root={roots / 'images'}", "data.num_classes=3", "data.image_size=16",
                              "data.num_workers=0"],
             "moving_digits": ["data.num_samples=300", "data.noise=0.05"],  # noise: every clip distinct
             "mnist1d": ["data.num_samples=500"], "digits": [], "synthetic": []}.get(name, [f"data.root={roots}"])
    overrides = [f"data={name}", *extra]
    a, b = load_data(data_cfg(*overrides)), load_data(data_cfg(*overrides))
    c = load_data(data_cfg(*overrides, "data.split_seed=7"))
    content = {k: {r.numpy().tobytes() for r in getattr(a, f"{k}_x")} for k in ("train", "val", "test")}
    assert all(len(content[k]) == a.sizes()[k] for k in content)  # samples are distinct, so content identifies
    assert not content["train"] & content["val"] and not content["train"] & content["test"] \
        and not content["val"] & content["test"]
    assert torch.equal(a.val_x, b.val_x) and torch.equal(a.train_y, b.train_y)
    assert not torch.equal(a.val_x, c.val_x)
    assert sum(a.class_counts()) == a.sizes()["train"] and len(a.class_counts()) == a.num_classes


def test_batch_preparation_runs_on_one_cpu_thread_and_restores_the_count():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen = []
        x, y = torch.rand(10, 1, 4, 4), torch.arange(10)

        class Probe:
            def __len__(self):
                return 1

            def __call__(self, xb, g):
                seen.append(torch.get_num_threads())
                return xb

        for _ in InMemoryLoader(x, y, 5, shuffle=True, transform=BatchTransform(augment=Probe())):
            assert torch.get_num_threads() == 2  # the consumer (the model) keeps its threads
        assert seen == [1, 1]
        with one_cpu_thread(torch.device("meta")):  # accelerators are left alone
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
