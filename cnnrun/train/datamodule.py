"""A LightningDataModule over in-memory splits: the tensors move to the training device once, in ``setup``."""
from __future__ import annotations

import pytorch_lightning as pl

from cnnrun.data import Splits
from cnnrun.data.loader import InMemoryLoader


class InMemoryDataModule(pl.LightningDataModule):
    def __init__(self, splits: Splits, batch_size: int, seed: int, eval_batch_size: int | None = None):
        super().__init__()
        self.splits = splits
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or max(batch_size, 512)
        self.seed = seed

    def setup(self, stage: str) -> None:
        device = self.trainer.strategy.root_device if self.trainer is not None else "cpu"
        s = self.splits
        for name in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y"):
            setattr(s, name, getattr(s, name).to(device))

    def _epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def train_dataloader(self):
        return InMemoryLoader(self.splits.train_x, self.splits.train_y, self.batch_size, shuffle=True,
                              seed=self.seed, epoch=self._epoch)

    def val_dataloader(self):
        return InMemoryLoader(self.splits.val_x, self.splits.val_y, self.eval_batch_size)

    def test_dataloader(self):
        return InMemoryLoader(self.splits.test_x, self.splits.test_y, self.eval_batch_size)
