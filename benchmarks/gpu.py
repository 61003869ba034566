"""GPU throughput: fp32 eager against bf16-mixed + channels_last + torch.compile, through cnnrun's own training path.

Two workloads: ``resnet18`` on 3x32x32 synthetic data and ``inception`` on digits. Each setting trains once; a
callback notes when each training epoch starts and when its training batches end (the validation's start), with the
device synchronised at both, and the throughput is the training images of the epochs after the first (counted batch
by batch) over their training time. The first epoch (compilation, cudnn's autotuning, the validation graph's
compilation) and the test passes are left out. Timing two fits of different lengths instead would subtract two
compilations, and a second compilation in the same process is faster (warm caches): on the CPU, the short fit of a
compiled resnet18 took 101 s and the long one 20 s. The share of the device's peak is the training FLOPs (3 x 2 x
MACs per image: forward, and a backward of twice the forward) per second over the peak that a large matmul reaches
on this device in the same precision (measured here, not taken from a data sheet).

    python benchmarks/gpu.py [--samples 20000] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from cnnrun import compose, run
from overhead import callback_in_cnnrun  # benchmarks/, this script's folder

# overrides, and the epochs of the fit (all but the first are timed): digits has 1,293 training images, so its
# epochs are short and many
WORKLOADS = {
    "resnet18": (["model=resnet18", "data=synthetic", "data.input_shape=[3,32,32]", "data.num_classes=10",
                  "data.batch_size=256"], 5),
    "inception": (["model=inception", "data=digits", "data.batch_size=256"], 22),
}
SETTINGS = {
    "fp32 eager": ["trainer.precision=32-true"],
    "bf16 + channels_last + compile": ["trainer.precision=bf16-mixed", "trainer.channels_last=true",
                                       "trainer.compile=true"],
}
QUIET = ["trainer=gpu", "logger=none", "callbacks.progress_bar.refresh_rate=0"]


def matmul_peak(dtype: torch.dtype, n: int = 8192, repeats: int = 20) -> float:
    """FLOP/s of an n x n matmul in ``dtype``: the reachable peak of this device in that precision."""
    a = torch.randn(n, n, device="cuda", dtype=dtype)
    b = torch.randn(n, n, device="cuda", dtype=dtype)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize()
    return 2 * n ** 3 * repeats / (time.perf_counter() - start)


def _synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def train_clock():
    """A Lightning callback that notes each training epoch's start and the end of its training batches (the start
    of its validation, or the epoch's end without one), the device synchronised first, and the images it trained."""
    import pytorch_lightning as pl

    class TrainClock(pl.Callback):
        def __init__(self):
            self.starts: list[float] = []
            self.ends: list[float] = []
            self.images: list[int] = []

        def on_train_epoch_start(self, trainer, pl_module):
            _synchronize()
            self.starts.append(time.perf_counter())
            self.images.append(0)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.images[-1] += len(batch[1])  # (x, y): the labels' count, without reading the device

        def _end(self):
            if len(self.ends) < len(self.starts):
                _synchronize()
                self.ends.append(time.perf_counter())

        def on_validation_start(self, trainer, pl_module):
            if not trainer.sanity_checking and trainer.state.fn == "fit":
                self._end()

        def on_train_epoch_end(self, trainer, pl_module):
            self._end()

    return TrainClock()


def timed_fit(overrides: list[str], epochs: int) -> dict:
    """One fit through cnnrun's ``run()``, its training epochs clocked (a callback added to its Trainer): the
    training seconds of the epochs after the first, the first epoch's, the whole fit's, and the run's record."""
    clock = train_clock()
    with callback_in_cnnrun(clock), tempfile.TemporaryDirectory() as out:
        metrics = run(compose([*QUIET, *overrides, f"trainer.max_epochs={epochs}"]), output_dir=out)
        record = json.loads((Path(out) / "metrics.json").read_text())
    spans = [end - start for start, end in zip(clock.starts, clock.ends)]
    return {"timed_s": sum(spans[1:]), "timed_epochs": len(spans) - 1, "timed_images": sum(clock.images[1:]),
            "first_epoch_s": spans[0], "fit_s": record["fit_s"], "metrics": metrics}


def macs_per_image(overrides: list[str]) -> int:
    from cnnrun import summarize
    from cnnrun.config import to_plain

    plain = to_plain(compose([*QUIET, *overrides]))
    with torch.device("meta"):  # shapes and counts only: nothing allocated
        return summarize(plain["model"], plain["data"]["input_shape"], plain["data"]["num_classes"])["macs"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=20000, help="synthetic data set size (resnet18)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this benchmark measures the GPU paths")
    device = torch.cuda.get_device_name()
    peaks = {"fp32 eager": matmul_peak(torch.float32), "bf16 + channels_last + compile": matmul_peak(torch.bfloat16)}
    print(f"device: {device}; matmul peak fp32 {peaks['fp32 eager'] / 1e12:.1f} TFLOP/s (TF32 off: "
          f"{torch.backends.cuda.matmul.allow_tf32=}), bf16 {peaks['bf16 + channels_last + compile'] / 1e12:.1f}")
    results = []
    for workload, (base, epochs) in WORKLOADS.items():
        base = [*base, f"data.num_samples={args.samples}"] if workload == "resnet18" else base
        flops = 6 * macs_per_image(base)
        for setting, extra in SETTINGS.items():
            fit = timed_fit([*base, *extra], epochs)
            rate = fit["timed_images"] / fit["timed_s"]
            row = {"workload": workload, "setting": setting, "images_per_s": rate, "epochs": epochs,
                   "timed_epochs": fit["timed_epochs"], "timed_s": fit["timed_s"],
                   "first_epoch_s": fit["first_epoch_s"], "fit_s": fit["fit_s"],
                   "peak_share": rate * flops / peaks[setting], "test_acc": fit["metrics"].get("test/acc")}
            results.append(row)
            print(f"{workload:10s} {setting:32s} {rate:10.0f} img/s  {100 * row['peak_share']:5.1f}% of peak  "
                  f"first epoch {fit['first_epoch_s']:.1f}s, {fit['timed_epochs']} more in {fit['timed_s']:.1f}s, "
                  f"fit {fit['fit_s']:.1f}s  test/acc {row['test_acc']}", flush=True)
        fp32, fast = results[-2]["images_per_s"], results[-1]["images_per_s"]
        print(f"{workload}: speedup {fast / fp32:.2f}x")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"device": device, "torch": torch.__version__, "peaks": peaks, "results": results}, fh, indent=2)


if __name__ == "__main__":
    main()
