"""The LightningDataModule over loaded splits.

In-memory splits (tensors) move to the training device once, in ``setup``, and are batched there by
:class:`InMemoryLoader`; streamed splits (image files too large for memory) are read by a DataLoader with workers,
pinned memory and persistent workers (:class:`DeviceLoader`). Either way every batch is prepared on the device:
uint8 -> float, the ``data.augment`` augmentations (training batches only), the training split's normalisation.

``data.balance`` corrects an imbalanced training set: ``sampler`` draws each epoch's samples with probability
inversely proportional to their class size; ``loss_weights`` exposes :attr:`DataModule.class_weights`
(``n / (C * n_c)``, scikit-learn's "balanced" weights), which the training loss uses.
"""
from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch

from cnnrun.data import Splits
from cnnrun.data.augment import build_augment
from cnnrun.data.loader import BatchTransform, DeviceLoader, InMemoryLoader
from cnnrun.data.splits import balanced_class_weights


class DataModule(pl.LightningDataModule):
    """Loaders over ``splits`` for training (augmented, shuffled or class-balanced), validation and test; ``data``
    is the run's data config (augment, balance, num_workers)."""

    def __init__(self, splits: Splits, batch_size: int, seed: int, eval_batch_size: int | None = None,
                 data: dict[str, Any] | None = None):
        super().__init__()
        data = data or {}
        self.splits = splits
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or max(batch_size, 512)
        self.seed = seed
        self.balance = data.get("balance", "none")
        self.augment = build_augment(data.get("augment"), splits.input_shape, splits.value_range)
        self.num_workers = 0
        if splits.streamed:
            from cnnrun.data.image_folder import num_workers

            self.num_workers = num_workers(data)
        self.class_weights: torch.Tensor | None = None
        if self.balance == "loss_weights":
            self.class_weights = balanced_class_weights(splits.train_y, splits.num_classes)
        self.device = torch.device("cpu")
        self.rank, self.world = 0, 1
        self._train_loader = None
        self._persistent: list[DeviceLoader] = []

    def setup(self, stage: str) -> None:
        self.device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        # distributed training: each process iterates over its own shard of every split
        self.rank, self.world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer is not None \
            else (0, 1)
        s = self.splits
        names = ("train_y", "val_y", "test_y") if s.streamed else \
            ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")
        for name in names:
            setattr(s, name, getattr(s, name).to(self.device))
        if self.class_weights is not None:
            self.class_weights = self.class_weights.to(self.device)
        self._train_loader = None

    def _epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def _sample_weights(self) -> torch.Tensor | None:
        """Per-sample weights for class-balanced sampling: 1 / (size of the sample's class)."""
        if self.balance != "sampler":
            return None
        y = self.splits.train_y
        counts = torch.bincount(y, minlength=self.splits.num_classes).double()
        weights = (1.0 / counts)[y]
        return weights.cpu() if self.splits.streamed else weights

    def _overfitting(self) -> bool:
        """Lightning's ``overfit_batches`` (``debug=overfit``): the same first batches every epoch, as they come."""
        trainer = getattr(self, "trainer", None)
        return trainer is not None and bool(trainer.overfit_batches)

    def _loader(self, x, y, batch_size: int, train: bool, persistent: bool = False):
        # Lightning replaces a DataLoader's sampler when it overfits batches; these loaders are not DataLoaders
        train_order = train and not self._overfitting()
        transform = BatchTransform.for_splits(self.splits, self.augment if train_order else None)
        extra = dict(shuffle=True, seed=self.seed, epoch=self._epoch, weights=self._sample_weights()) \
            if train_order else {}
        extra.update(rank=self.rank, world=self.world)
        if not self.splits.streamed:
            return InMemoryLoader(x, y, batch_size, transform=transform, **extra)
        loader = DeviceLoader(x, y, batch_size, device=self.device, transform=transform,
                              num_workers=self.num_workers, persistent=persistent, **extra)
        if persistent:  # workers that live across epochs (training, validation) are stopped in teardown
            self._persistent.append(loader)
        return loader

    def teardown(self, stage: str) -> None:
        for loader in self._persistent:
            loader.close()
        self._persistent.clear()
        self._train_loader = None

    def train_dataloader(self):
        # one loader per fit: a streamed loader keeps its worker processes between epochs
        if self._train_loader is None:
            self._train_loader = self._loader(self.splits.train_x, self.splits.train_y, self.batch_size, True,
                                              persistent=True)
        return self._train_loader

    def train_eval_dataloader(self):
        """The training split in evaluation order, prepared as for evaluation (no augmentation, no re-sampling)."""
        return self._loader(self.splits.train_x, self.splits.train_y, self.eval_batch_size, False)

    def val_dataloader(self):
        return self._loader(self.splits.val_x, self.splits.val_y, self.eval_batch_size, False, persistent=True)

    def test_dataloader(self):
        return self._loader(self.splits.test_x, self.splits.test_y, self.eval_batch_size, False)


InMemoryDataModule = DataModule  # the name fit.py and older code use
