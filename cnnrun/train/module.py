"""The LightningModule: a built CnnModel trained as a classifier.

Its only hyperparameter is the resolved run config as plain data (dicts, lists, numbers, strings), so checkpoints
load with ``torch.load(weights_only=True)`` and ``Classifier.load_from_checkpoint`` rebuilds the model.
"""
from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from cnnrun.errors import Diverged
from cnnrun.model import build_model
from cnnrun.train.optim import make_optimizer, make_schedule


class Classifier(pl.LightningModule):
    def __init__(self, config: dict[str, Any], model: torch.nn.Module | None = None):
        super().__init__()
        self.save_hyperparameters({"config": config}, logger=False)
        data = config["data"]
        self.model = model if model is not None else build_model(config["model"], data["input_shape"],
                                                                 data["num_classes"])
        self.history: list[dict[str, float]] = []
        self._sums: dict[str, torch.Tensor] = {}
        # On an accelerator, checking the loss every step would synchronise the device every step.
        self.divergence_check_every = 1

    @property
    def config(self) -> dict[str, Any]:
        return self.hparams["config"]

    def forward(self, x):
        return self.model(x)

    # -- metrics: summed on the device, reduced once per epoch -------------------------------------------------
    def _accumulate(self, stage: str, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        n = y.shape[0]
        correct = (logits.argmax(1) == y).sum()
        batch = torch.stack([loss.detach() * n, correct.to(loss.dtype), loss.new_tensor(n)])
        self._sums[stage] = self._sums[stage] + batch if stage in self._sums else batch

    def _log_epoch(self, stage: str) -> dict[str, float]:
        sums = self._sums.pop(stage, None)
        if sums is None:
            return {}
        sums = self.trainer.strategy.reduce(sums.float(), reduce_op="sum")
        values = {f"{stage}/loss": sums[0] / sums[2], f"{stage}/acc": sums[1] / sums[2]}
        for key, value in values.items():
            self.log(key, value, on_epoch=True, prog_bar=stage != "train", sync_dist=False)
        return {k: float(v) for k, v in values.items()}

    # -- steps ------------------------------------------------------------------------------------------------
    def _step(self, stage: str, batch) -> torch.Tensor:
        x, y = batch
        logits = self.model(x)
        loss = F.cross_entropy(logits, y)
        self._accumulate(stage, loss, logits, y)
        return loss

    def training_step(self, batch, batch_idx):
        loss = self._step("train", batch)
        if batch_idx % self.divergence_check_every == 0 and not torch.isfinite(loss):
            raise Diverged(self.current_epoch, self.global_step, float(loss.detach()))
        return loss

    def validation_step(self, batch, batch_idx):
        self._step("val", batch)

    def test_step(self, batch, batch_idx):
        self._step("test", batch)

    def on_fit_start(self):
        if self.device.type != "cpu":
            self.divergence_check_every = 25

    def on_validation_epoch_end(self):
        if not self.trainer.sanity_checking:
            self._val_metrics = self._log_epoch("val")
        else:
            self._sums.pop("val", None)

    def on_train_epoch_end(self):
        metrics = self._log_epoch("train")
        if "train/loss" in metrics and not torch.isfinite(torch.tensor(metrics["train/loss"])):
            raise Diverged(self.current_epoch, self.global_step, metrics["train/loss"])
        lr = self.trainer.optimizers[0].param_groups[0]["lr"]
        self.log("train/lr", lr, on_epoch=True)
        self.history.append({"epoch": self.current_epoch, **metrics, **getattr(self, "_val_metrics", {}),
                             "train/lr": lr})
        self._val_metrics = {}

    def on_test_epoch_end(self):
        self.test_metrics = self._log_epoch("test")

    # -- optimisation -------------------------------------------------------------------------------------------
    def configure_optimizers(self):
        optimizer = make_optimizer(self.parameters(), self.config["optim"])
        schedule = make_schedule(optimizer, self.config["sched"], self.trainer.estimated_stepping_batches,
                                 self.trainer.max_epochs or 1)
        return optimizer if schedule is None else {"optimizer": optimizer, "lr_scheduler": schedule}
