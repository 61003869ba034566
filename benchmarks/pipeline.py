"""One epoch of augmented training batches: cnnrun's on-device pipeline against torchvision's per-sample one.

Both sides produce the same thing: shuffled batches of random crops (padding 4, or 2 on 32x32 digits) and
horizontal flips, as normalised float32 tensors. cnnrun holds the training split as one tensor and augments whole
batches (``InMemoryLoader`` + ``BatchTransform``); the reference is a ``Dataset`` over the same uint8 tensor with a
per-sample ``transforms.v2`` pipeline (RandomCrop, RandomHorizontalFlip, ToDtype, Normalize) behind a
``DataLoader`` with 0, 1 and 2 workers (persistent, one warm-up epoch first, so worker start-up is not counted).
The contenders take turns epoch by epoch; prints the median epoch time of each and the ratio against
torchvision's best worker count.

    python benchmarks/pipeline.py [--repeats 5] [--threads 2]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch


def digits_data() -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """The digits training split as cnnrun loads it (1x32x32 floats in [0, 1]), batch size 32, padding 2."""
    from cnnrun import compose
    from cnnrun.config import to_plain
    from cnnrun.data import load_data

    splits = load_data(to_plain(compose([]))["data"])
    return splits.train_x, splits.train_y, 32, 2


def cifar_shaped_data(n: int = 10_000) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """CIFAR-shaped uint8 images (n x 3x32x32, random), batch size 128, padding 4."""
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g), \
        torch.randint(0, 10, (n,), generator=g), 128, 4


def stats(x: torch.Tensor) -> tuple[list[float], list[float]]:
    from cnnrun.data.splits import channel_stats

    return channel_stats(x)


def cnnrun_epochs(x, y, batch_size, padding):
    """A function that runs one epoch of cnnrun's pipeline (the next epoch each call)."""
    from cnnrun.data.augment import build_augment
    from cnnrun.data.loader import BatchTransform, InMemoryLoader

    mean, std = stats(x)
    augment = build_augment({"crop": {"padding": padding}, "hflip": {"p": 0.5}}, x.shape[1:], (0.0, 1.0))
    epoch = {"n": 0}
    loader = InMemoryLoader(x, y, batch_size, shuffle=True, seed=0, epoch=lambda: epoch["n"],
                            transform=BatchTransform(mean, std, augment))

    def one_epoch():
        epoch["n"] += 1
        for xb, yb in loader:
            pass
        assert xb.dtype == torch.float32 and xb.shape[1:] == x.shape[1:]
    return one_epoch


class TensorDataset(torch.utils.data.Dataset):
    """The reference: one sample at a time through a torchvision v2 pipeline."""

    def __init__(self, x, y, transform):
        self.x, self.y, self.transform = x, y, transform

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.transform(self.x[i]), self.y[i]


def torchvision_epochs(x, y, batch_size, padding, workers: int):
    """A function that runs one epoch of the per-sample reference with ``workers`` DataLoader workers."""
    from torchvision.transforms import v2

    mean, std = stats(x)
    transform = v2.Compose([v2.RandomCrop(list(x.shape[-2:]), padding=padding), v2.RandomHorizontalFlip(),
                            v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])
    loader = torch.utils.data.DataLoader(TensorDataset(x, y, transform), batch_size=batch_size, shuffle=True,
                                         num_workers=workers, persistent_workers=workers > 0)

    def one_epoch():
        for xb, yb in loader:
            pass
        assert xb.dtype == torch.float32 and xb.shape[1:] == x.shape[1:]
    return one_epoch


def interleaved(runners: dict[str, object], repeats: int) -> dict[str, float]:
    """Median epoch time of each runner, the runners taking turns (so that load from other processes on a shared
    machine falls on all of them alike); one warm-up epoch each first (worker start-up is not counted)."""
    times: dict[str, list[float]] = {k: [] for k in runners}
    for r in range(repeats + 1):
        for name, one_epoch in runners.items():
            start = time.perf_counter()
            one_epoch()
            if r:
                times[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name, (x, y, bs, pad) in (("digits 1x32x32", digits_data()), ("CIFAR-shaped 3x32x32 uint8",
                                                                      cifar_shaped_data())):
        runners = {"cnnrun": cnnrun_epochs(x, y, bs, pad)}
        runners.update({f"torchvision {w}": torchvision_epochs(x, y, bs, pad, w) for w in (0, 1, 2)})
        median = interleaved(runners, args.repeats)
        print(f"\n{name}: {len(y)} samples, batch {bs}, crop padding {pad} + hflip")
        print(f"  cnnrun (in memory, batch ops)           {median['cnnrun'] * 1000:8.1f} ms/epoch")
        for w in (0, 1, 2):
            print(f"  torchvision v2 + DataLoader, {w} workers  {median[f'torchvision {w}'] * 1000:8.1f} ms/epoch")
        best = min(median[f"torchvision {w}"] for w in (0, 1, 2))
        print(f"  speed-up against torchvision's best: {best / median['cnnrun']:.1f}x")


if __name__ == "__main__":
    main()
