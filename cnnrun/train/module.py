"""The LightningModule: a built CnnModel trained as a classifier.

Its only hyperparameter is the resolved run config as plain data (dicts, lists, numbers, strings), so checkpoints
load with ``torch.load(weights_only=True)`` and ``Classifier.load_from_checkpoint`` rebuilds the model.
"""
from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from cnnrun.data.loader import epoch_seed
from cnnrun.errors import Diverged
from cnnrun.model import build_model
from cnnrun.train.objectives import l1_penalty, make_objective, mix_batch
from cnnrun.train.optim import make_optimizer, make_schedule
from cnnrun.train.stepping import Stepper, stepping_batches


# epoch_seed's stream for the global generator (0 orders samples, 1 draws augmentations)
GLOBAL_RNG_STREAM = 2


def run_seed(config: dict[str, Any]) -> int:
    """The run's seed: ``seed`` when it is an integer, else 0."""
    seed = config.get("seed")
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else 0


class Classifier(pl.LightningModule):
    def __init__(self, config: dict[str, Any], model: torch.nn.Module | None = None):
        super().__init__()
        self.save_hyperparameters({"config": config}, logger=False)
        data = config["data"]
        if model is None:  # rebuilt from a checkpoint, whose weights are loaded next: no init_weights file needed
            spec = dict(config["model"])
            if isinstance(spec.get("init_weights"), dict):
                spec["init_weights"] = {**spec["init_weights"], "path": None}
            model = build_model(spec, data["input_shape"], data["num_classes"])
        self.model = model
        self.objective = make_objective(config["loss"])
        reg = config["regularization"]
        self.l1 = float(reg["l1"])
        self.mixup_alpha, self.cutmix_alpha = float(reg["mixup_alpha"]), float(reg["cutmix_alpha"])
        self.class_weights: torch.Tensor | None = None  # set from the data module (data.balance=loss_weights)
        self.eval_stage = "test"  # test_step's metric prefix: "test", or "train_eval" for the clean training split
        self.history: list[dict[str, float]] = []
        self._batches: dict[str, tuple[list, list, list]] = {}  # stage -> (losses, correct counts, sizes)
        # On an accelerator, checking the loss every step would synchronise the device every step.
        self.divergence_check_every = 1
        # cnnrun takes the optimisation step itself (cnnrun/train/stepping.py: the same step with less overhead)
        self.automatic_optimization = False
        self.stepper: Stepper | None = None
        self.lean_step: bool | None = None  # None: the lean step wherever it is exact; False: Lightning's path
        self._schedule_interval: str | None = None

    @property
    def config(self) -> dict[str, Any]:
        return self.hparams["config"]

    def forward(self, x):
        return self.model(x)

    # -- metrics: kept on the device per batch, summed and reduced once per epoch ---------------------------------
    def _accumulate(self, stage: str, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        losses, corrects, sizes = self._batches.setdefault(stage, ([], [], []))
        losses.append(loss.detach())
        corrects.append((logits.argmax(1) == y).sum())
        sizes.append(y.shape[0])

    def _log_epoch(self, stage: str) -> dict[str, float]:
        if stage not in self._batches:
            return {}
        losses, corrects, sizes = self._batches.pop(stage)
        n = torch.tensor(sizes, dtype=torch.float32, device=losses[0].device)
        sums = torch.stack([(torch.stack(losses).float() * n).sum(), torch.stack(corrects).sum().float(), n.sum()])
        sums = self.trainer.strategy.reduce(sums, reduce_op="sum")
        values = {f"{stage}/loss": sums[0] / sums[2], f"{stage}/acc": sums[1] / sums[2]}
        for key, value in values.items():
            self.log(key, value, on_epoch=True, prog_bar=stage != "train", sync_dist=False)
        # The loggers' x axis is the epoch, counted from 1 as the progress bar and the report count it (a logged
        # "step" is Lightning's way to set it; without it the x axis is the optimizer step and an "epoch" curve is
        # added). Evaluations after training (test, train_eval) sit at the last epoch.
        during_fit = stage in ("train", "val")
        self.log("step", float(self.current_epoch + (1 if during_fit else 0)), on_epoch=True, sync_dist=False)
        return {k: float(v) for k, v in values.items()}

    # -- steps ------------------------------------------------------------------------------------------------
    def _step(self, stage: str, batch) -> torch.Tensor:
        """Evaluation: plain cross-entropy (comparable across objectives) and accuracy."""
        x, y = batch
        logits = self.model(self.formatted(x))
        loss = F.cross_entropy(logits, y)
        self._accumulate(stage, loss, logits, y)
        return loss

    def training_step(self, batch, batch_idx):
        """The configured objective (with class weights, mixup/cutmix targets and the L1 penalty)."""
        x, y = batch
        if self.mixup_alpha > 0 or self.cutmix_alpha > 0:
            x, target = mix_batch(x, y, self.config["data"]["num_classes"], self.mixup_alpha, self.cutmix_alpha)
        else:
            target = y
        logits = self.model(self.formatted(x))
        loss = self.objective(logits, target, self.class_weights)
        if self.l1 > 0:
            loss = loss + self.l1 * l1_penalty(self.model)
        self._accumulate("train", loss, logits, y)
        if batch_idx % self.divergence_check_every == 0 and not math.isfinite(loss.item()):
            raise Diverged(self.current_epoch, self.global_step, loss.item())
        self.stepper.step(loss, batch_idx)
        return loss

    def validation_step(self, batch, batch_idx):
        self._step("val", batch)

    def test_step(self, batch, batch_idx):
        self._step(self.eval_stage, batch)

    # -- speed: memory format and compilation (trainer.channels_last, trainer.compile) ---------------------------
    @property
    def memory_format(self) -> torch.memory_format | None:
        """channels_last for 2D inputs, channels_last_3d for 3D inputs, None otherwise or when off."""
        if not self.config["trainer"]["channels_last"]:
            return None
        rank = len(self.config["data"]["input_shape"]) - 1
        return {2: torch.channels_last, 3: torch.channels_last_3d}.get(rank)

    def setup(self, stage: str) -> None:
        fmt = self.memory_format
        if fmt is not None:
            self.model.to(memory_format=fmt)
        opts = self.config["trainer"]["compile"]
        if opts and not getattr(self, "_compiled", False):
            # nn.Module.compile keeps the parameter names, so checkpoints stay loadable without compiling
            self.model.compile(**({} if opts is True else dict(opts)))
            self._compiled = True

    def formatted(self, x: torch.Tensor) -> torch.Tensor:
        """A batch in the model's memory format (trainer.channels_last)."""
        fmt = self.memory_format
        return x if fmt is None else x.contiguous(memory_format=fmt)

    @property
    def _accumulate_grad_batches(self) -> int:
        return int(self.config["trainer"]["accumulate_grad_batches"])

    def on_train_epoch_start(self):
        """Dropout and mixup draw from torch's global generator: seeded here from (seed, epoch), a run resumed from
        last.ckpt draws what the uninterrupted run drew, with no generator state in the checkpoint (sample order and
        augmentation have their own streams, seeded alike in cnnrun/data/loader.py)."""
        seed = epoch_seed(run_seed(self.config), self.current_epoch, stream=GLOBAL_RNG_STREAM)
        if self.device.type == "cpu":  # torch.manual_seed would also queue the accelerators' seeding, recording the
            torch.default_generator.manual_seed(seed)  # call stack each time: about 1 ms deep in Lightning's loop
        else:
            torch.manual_seed(seed)

    def on_train_start(self):
        trainer_cfg = self.config["trainer"]
        self.stepper = Stepper(self, clip_val=trainer_cfg["gradient_clip_val"],
                               clip_algorithm=trainer_cfg["gradient_clip_algorithm"],
                               accumulate=self._accumulate_grad_batches, interval=self._schedule_interval,
                               lean=self.lean_step)

    def on_before_optimizer_step(self, optimizer):
        self.stepper.clip()

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.stepper.after_batch()

    def on_fit_start(self):
        if self.device.type != "cpu":
            self.divergence_check_every = 25
        weights = getattr(self.trainer.datamodule, "class_weights", None)
        self.class_weights = None if weights is None else weights.to(self.device)
        if self.trainer.ckpt_path is None and self.trainer.datamodule is not None:
            x, _ = next(iter(self.trainer.datamodule.train_dataloader()))
            self.init_from_data(x)
        if self.trainer.world_size > 1 and self.trainer.datamodule is not None:
            self.shards = self._shard_report(self.trainer.datamodule.train_dataloader())

    def _shard_report(self, loader) -> dict[str, Any]:
        """Distributed training: each process's share of the first epoch's training samples, gathered from all
        processes (recorded in metrics.json as ``distributed``)."""
        order = loader.order()
        gathered = self.all_gather(order.to(self.device)).cpu()  # (world, shard size)
        n = loader._count()
        return {"world_size": self.trainer.world_size, "train_samples": n,
                "train_shard_sizes": [int(len(row)) for row in gathered],
                "distinct_samples_seen": int(torch.unique(gathered).numel()),
                "samples_in_two_shards": int(gathered.numel() - torch.unique(gathered).numel())}

    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor) -> None:
        """Data-dependent initialisation (``netvlad`` with ``init: kmeans``): each such layer gets the inputs it
        sees on a training batch."""
        targets = [m for m in self.model.modules() if getattr(m, "init", None) == "kmeans"]
        if not targets:
            return
        seen: dict[nn.Module, torch.Tensor] = {}
        hooks = [m.register_forward_pre_hook(lambda mod, inp: seen.__setitem__(mod, inp[0])) for m in targets]
        was_training = self.model.training
        try:
            self.model.eval()
            self.model(x)
        finally:
            self.model.train(was_training)
            for h in hooks:
                h.remove()
        for module in targets:
            module.init_from_descriptors(seen[module], seed=run_seed(self.config))

    def on_validation_epoch_end(self):
        if not self.trainer.sanity_checking:
            self._val_metrics = self._log_epoch("val")
        else:
            self._batches.pop("val", None)

    def on_train_epoch_end(self):
        metrics = self._log_epoch("train")
        if "train/loss" in metrics and not torch.isfinite(torch.tensor(metrics["train/loss"])):
            raise Diverged(self.current_epoch, self.global_step, metrics["train/loss"])
        lr = self.trainer.optimizers[0].param_groups[0]["lr"]
        self.log("train/lr", lr, on_epoch=True)
        self.history.append({"epoch": self.current_epoch, **metrics, **getattr(self, "_val_metrics", {}),
                             "train/lr": lr})
        self._val_metrics = {}
        self.stepper.after_epoch()

    def on_test_epoch_end(self):
        self.eval_metrics = getattr(self, "eval_metrics", {})
        self.eval_metrics.update(self._log_epoch(self.eval_stage))

    # -- optimisation -------------------------------------------------------------------------------------------
    def configure_optimizers(self):
        optimizer = make_optimizer(self.parameters(), self.config["optim"])
        schedule = make_schedule(optimizer, self.config["sched"],
                                 stepping_batches(self.trainer, self._accumulate_grad_batches),
                                 self.trainer.max_epochs or 1)
        if schedule is None:
            return optimizer
        self._schedule_interval = schedule["interval"]  # the Stepper steps it (manual optimisation)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule["scheduler"]}}
