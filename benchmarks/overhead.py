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

Besides each fit's whole time, every loop clocks the start of each epoch: the time from the second epoch's start to
the end of training, divided by the epochs after the first, is the **per-epoch cost** (training, validation and
whatever each epoch does: checkpoints, logging, the periodic dashboards), without the fixed cost of a fit (set-up
before the first step, the first epoch's one-off work, the end), which is reported apart as the whole time less
the per-epoch cost times the epochs.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Iterator, NamedTuple, Sequence

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


class Timing(NamedTuple):
    total: float  # the fit, s
    per_epoch: float  # from the second epoch's start to the end, per epoch after the first, s


def per_epoch(starts: list[float], end: float) -> float:
    """The mean epoch time after the first, from the epochs' start times and the end of the last (nan for one epoch)."""
    return (end - starts[1]) / (len(starts) - 1) if len(starts) > 1 else float("nan")


def plain_loop(epochs: int, seed: int = 0, workload: Sequence[str] = ()) -> Timing:
    model, opt, epoch, train, val = _setup(epochs, seed, workload)
    starts = []
    start = time.perf_counter()
    for e in range(epochs):
        starts.append(time.perf_counter())
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
    end = time.perf_counter()
    return Timing(end - start, per_epoch(starts, end))


def epoch_clock():
    """A Lightning callback that notes when each training epoch starts and when training ends."""
    import pytorch_lightning as pl

    class EpochClock(pl.Callback):
        def __init__(self):
            self.starts: list[float] = []
            self.end = 0.0

        def on_train_epoch_start(self, trainer, pl_module):
            self.starts.append(time.perf_counter())

        def on_train_end(self, trainer, pl_module):
            self.end = time.perf_counter()

    return EpochClock()


def bare_lightning(epochs: int, seed: int = 0, workload: Sequence[str] = ()) -> Timing:
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

    clock = epoch_clock()
    trainer = pl.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, accelerator="cpu", devices=1,
                         callbacks=[clock])
    start = time.perf_counter()
    trainer.fit(Bare(), train, val)
    return Timing(time.perf_counter() - start, per_epoch(clock.starts, clock.end))


@contextlib.contextmanager
def callback_in_cnnrun(callback) -> Iterator[None]:
    """cnnrun's runs inside the block train with ``callback`` added to their Trainer (a clock: ``epoch_clock``, or
    ``gpu.py``'s)."""
    import cnnrun.train.fit as fit

    make_trainer = fit.make_trainer

    def with_callback(*args, **kwargs):
        trainer = make_trainer(*args, **kwargs)
        trainer.callbacks.append(callback)
        return trainer

    fit.make_trainer = with_callback
    try:
        yield
    finally:
        fit.make_trainer = make_trainer


def cnnrun_fit(epochs: int, progress_bar: bool, workload: Sequence[str] = ()) -> Timing:
    """cnnrun's run; its fit time from metrics.json, its epochs clocked by a callback added to its Trainer."""
    clock = epoch_clock()
    with callback_in_cnnrun(clock), tempfile.TemporaryDirectory() as tmp:
        run(compose(overrides(epochs, progress_bar, workload)), output_dir=tmp)
        fit_s = json.loads((Path(tmp) / "metrics.json").read_text())["fit_s"]
    return Timing(fit_s, per_epoch(clock.starts, clock.end))


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
    timings: dict[str, list[Timing]] = {"plain loop": [], "cnnrun fit": [], "bare Lightning": []}
    for _ in range(args.repeats):
        timings["plain loop"].append(plain_loop(args.epochs, workload=workload))
        timings["cnnrun fit"].append(cnnrun_fit(args.epochs, args.progress_bar, cnnrun_workload))
        timings["bare Lightning"].append(bare_lightning(args.epochs, workload=workload))
    times = {name: [t.total for t in ts] for name, ts in timings.items()}
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
    report_per_epoch(timings, args.epochs)


def report_per_epoch(timings: dict[str, list[Timing]], epochs: int) -> None:
    """Each loop's per-epoch cost and fixed cost per fit; the per-epoch ratios, paired per repeat."""
    epoch = {name: [t.per_epoch for t in ts] for name, ts in timings.items()}
    for name, ts in timings.items():
        fixed = [t.total - t.per_epoch * epochs for t in ts]
        print(f"{name:15s} per epoch: median {1000 * statistics.median(epoch[name]):.1f} ms "
              f"{sorted(round(1000 * v, 1) for v in epoch[name])}; fixed per fit: median "
              f"{1000 * statistics.median(fixed):.0f} ms")
    for num, den in (("cnnrun fit", "bare Lightning"), ("cnnrun fit", "plain loop"), ("bare Lightning", "plain loop")):
        paired = statistics.median(a / b for a, b in zip(epoch[num], epoch[den]))
        print(f"per epoch, {num} / {den}: of the medians "
              f"{statistics.median(epoch[num]) / statistics.median(epoch[den]):.3f}, median of the paired ratios "
              f"{paired:.3f}")


if __name__ == "__main__":
    main()
