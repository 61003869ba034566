"""Overhead of cnnrun's training path against a plain hand-written PyTorch loop.

Same model (LeNet-5), same data (digits, in memory, normalised), same optimizer (SGD, no schedule), same batch
size, same number of epochs with a validation pass after each. cnnrun's time is ``fit_s`` from metrics.json (the
``trainer.fit`` call: Lightning loops, metric accumulation, checkpointing, TensorBoard logging); the plain loop's is
its epochs. Prints the median of several repeats and the ratio.

    python benchmarks/overhead.py [--epochs 10] [--repeats 5] [--progress-bar]
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from cnnrun import build_model, compose, run
from cnnrun.config import to_plain
from cnnrun.data import load_data
from cnnrun.data.loader import BatchTransform, InMemoryLoader


def overrides(epochs: int, progress_bar: bool) -> list[str]:
    return ["sched=none", f"trainer.max_epochs={epochs}",
            f"callbacks.progress_bar.refresh_rate={1 if progress_bar else 0}"]


def plain_loop(epochs: int, seed: int = 0) -> float:
    cfg = to_plain(compose(overrides(epochs, False)))
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
        correct = 0
        with torch.no_grad():
            for x, y in val:
                correct += int((model(x).argmax(1) == y).sum())
    return time.perf_counter() - start


def cnnrun_fit(epochs: int, progress_bar: bool) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        run(compose(overrides(epochs, progress_bar)), output_dir=tmp)
        return json.loads((Path(tmp) / "metrics.json").read_text())["fit_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--progress-bar", action="store_true", help="keep the rich progress bar on in cnnrun")
    args = parser.parse_args()
    cnnrun_fit(1, False)  # warm-up: first-use costs (imports, allocator) out of the timings
    plain_loop(1)
    plain, ours = [], []
    for _ in range(args.repeats):
        plain.append(plain_loop(args.epochs))
        ours.append(cnnrun_fit(args.epochs, args.progress_bar))
    p, o = statistics.median(plain), statistics.median(ours)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.epochs} epochs of digits/lenet5")
    print(f"plain loop: median {p:.3f} s  {sorted(round(v, 3) for v in plain)}")
    print(f"cnnrun fit: median {o:.3f} s  {sorted(round(v, 3) for v in ours)}")
    print(f"ratio cnnrun / plain = {o / p:.3f}")


if __name__ == "__main__":
    main()
