"""Overhead of cnnrun's training path against a plain hand-written PyTorch loop.

Same model (LeNet-5), same data (digits, in memory, normalised, not augmented), same optimizer (SGD, no
schedule), same batch size, same number of epochs with a validation pass (loss and accuracy) after each. cnnrun's
time is ``fit_s`` from metrics.json (the ``trainer.fit`` call: Lightning loops, metric accumulation, checkpointing,
TensorBoard logging, dashboards); the plain loop's is its epochs. A third loop, the plain loop's step inside a bare
LightningModule run by pl.Trainer, is the floor of any Lightning-based runner. Each repeat runs the three back to
back; prints the medians, their ratio and the median of the repeats' ratios (the paired statistic: a slow spell of a
shared machine hits both runs of a pair). ``--workload`` picks the model and data (``WORKLOADS``): the default run's
LeNet-5 on digits, or a larger step (NiN at width 0.5 on 3x32x32 synthetic data; cnn1d on MNIST-1D), where a fixed
cost per epoch weighs less.

    python benchmarks/overhead.py [--workload default] [--epochs 10] [--repeats 5] [--threads N] [--progress-bar]
                                  [override ...]

Overrides after the options apply to cnnrun's run only (``logger=none``: what TensorBoard and the dashboards cost).
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from cnnrun import build_model, compose, run
from cnnrun.config import to_plain
from cnnrun.data import load_data
from cnnrun.data.loader import BatchTransform, InMemoryLoader

# model and data overrides of each workload (the three loops train the same model on the same data)
WORKLOADS = {
    "default": [],  # LeNet-5 on digits, batch 32
    "nin": ["model=nin", "model.width=0.5", "data=synthetic", "data.input_shape=[3,32,32]", "data.num_samples=512",
            "data.batch_size=64"],
    "cnn1d": ["model=cnn1d", "data=mnist1d"],  # batch 100
}


def overrides(epochs: int, progress_bar: bool, workload: Sequence[str] = ()) -> list[str]:
    """cnnrun's config for the comparison: ``workload`` (model and data overrides; the default run's when empty)
    without what the plain loop does not do: the plain loop neither augments nor smooths labels."""
    return ["sched=none", "data.augment=null", "loss.label_smoothing=0", f"trainer.max_epochs={epochs}",
            f"trainer.threads={torch.get_num_threads()}",
            f"callbacks.progress_bar.refresh_rate={1 if progress_bar else 0}", *workload]


def _setup(epochs: int, seed: int, workload: Sequence[str] = ()):
    """The model, optimizer and loaders both loops use (the loaders prepare batches as cnnrun's do)."""
    cfg = to_plain(compose(overrides(epochs, False, workload)))
    torch.manual_seed(seed)
    splits = load_data(cfg["data"])
    model = build_model(cfg["model"], cfg["data"]["input_shape"], cfg["data"]["num_classes"])
    optim_cfg = {k: v for k, v in cfg["optim"].items() if k != "name"}
    opt = torch.optim.SGD(model.parameters(), **optim_cfg)
    epoch = {"n": 0}
    prepare = BatchTransform.for_splits(splits)  # uint8/float -> normalised floats, as cnnrun's loaders do
    train = InMemoryLoader(splits.train_x, splits.train_y, cfg["data"]["batch_size"], shuffle=True, seed=seed,
                           epoch=lambda: epoch["n"], transform=prepare)
    val = InMemoryLoader(splits.val_x, splits.val_y, 512, transform=prepare)
    return model, opt, epoch, train, val


def plain_loop(epochs: int, seed: int = 0, workload: Sequence[str] = ()) -> float:
    model, opt, epoch, train, val = _setup(epochs, seed, workload)
    start = time.perf_counter()
    for e in range(epochs):
        epoch["n"] = e
        model.train()
        for x, y in train:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        loss_sum, correct = 0.0, 0
        with torch.no_grad():
            for x, y in val:
                out = model(x)
                loss_sum += float(F.cross_entropy(out, y, reduction="sum"))
                correct += int((out.argmax(1) == y).sum())
    return time.perf_counter() - start


def bare_lightning(epochs: int, seed: int = 0, workload: Sequence[str] = ()) -> float:
    """The floor of any Lightning-based runner: the plain loop's step inside a LightningModule (manual
    optimisation, no callbacks, logger, checkpoints or metrics), run by pl.Trainer."""
    import pytorch_lightning as pl

    model, opt, epoch, train, val = _setup(epochs, seed, workload)

    class Bare(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net, self.automatic_optimization = model, False

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = F.cross_entropy(self.net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        def validation_step(self, batch, batch_idx):
            x, y = batch
            out = self.net(x)
            return F.cross_entropy(out, y, reduction="sum"), (out.argmax(1) == y).sum()

        def configure_optimizers(self):
            return opt

        def on_train_epoch_start(self):
            epoch["n"] = self.current_epoch

    trainer = pl.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, accelerator="cpu", devices=1)
    start = time.perf_counter()
    trainer.fit(Bare(), train, val)
    return time.perf_counter() - start


def cnnrun_fit(epochs: int, progress_bar: bool, workload: Sequence[str] = ()) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        run(compose(overrides(epochs, progress_bar, workload)), output_dir=tmp)
        return json.loads((Path(tmp) / "metrics.json").read_text())["fit_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workload", default="default", choices=list(WORKLOADS))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--progress-bar", action="store_true", help="keep the rich progress bar on in cnnrun")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for all three (default: torch's)")
    parser.add_argument("cnnrun_overrides", nargs="*", help="more overrides for cnnrun's run (e.g. logger=none)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    workload = WORKLOADS[args.workload]
    cnnrun_workload = [*workload, *args.cnnrun_overrides]
    cnnrun_fit(1, False, cnnrun_workload)  # warm-up: first-use costs (imports, allocator) out of the timings
    plain_loop(1, workload=workload)
    bare_lightning(1, workload=workload)
    times: dict[str, list[float]] = {"plain loop": [], "cnnrun fit": [], "bare Lightning": []}
    for _ in range(args.repeats):
        times["plain loop"].append(plain_loop(args.epochs, workload=workload))
        times["cnnrun fit"].append(cnnrun_fit(args.epochs, args.progress_bar, cnnrun_workload))
        times["bare Lightning"].append(bare_lightning(args.epochs, workload=workload))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.epochs} epochs of {args.workload} "
          f"({' '.join(workload) or 'digits/lenet5'}; cnnrun: {' '.join(args.cnnrun_overrides) or 'as configured'})")
    plain = times["plain loop"]
    for name, values in times.items():
        ratio = statistics.median(values) / statistics.median(plain)
        paired = statistics.median(b / a for a, b in zip(plain, values))
        print(f"{name:15s} median {statistics.median(values):.3f} s  {sorted(round(v, 3) for v in values)}"
              + ("" if values is plain else f"  ratio to plain: of the medians {ratio:.3f}, "
                                            f"median of the {len(values)} paired ratios {paired:.3f}"))
    fit, bare = times["cnnrun fit"], times["bare Lightning"]  # the framework's floor: cnnrun's own cost over it
    print(f"cnnrun / bare Lightning: of the medians {statistics.median(fit) / statistics.median(bare):.3f}, "
          f"median of the paired ratios {statistics.median(c / b for c, b in zip(fit, bare)):.3f}")


if __name__ == "__main__":
    main()
