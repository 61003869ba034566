"""GPU throughput: fp32 eager against bf16-mixed + channels_last + torch.compile, through cnnrun's own training path.

Two workloads: ``resnet18`` on 3x32x32 synthetic data and ``inception`` on digits. Each setting trains twice, for a
short and a long number of epochs; the throughput is the extra epochs' images over the extra fit time, which
cancels start-up, compilation and the first epoch's warm-up. The share of the device's peak is the training FLOPs
(3 x 2 x MACs per image: forward, and a backward of twice the forward) per second over the peak that a large
matmul reaches on this device in the same precision (measured here, not taken from a data sheet).

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

# overrides, and the (short, long) epochs whose difference is timed: digits has 1,293 training images, so its
# epochs are short and many
WORKLOADS = {
    "resnet18": (["model=resnet18", "data=synthetic", "data.input_shape=[3,32,32]", "data.num_classes=10",
                  "data.batch_size=256"], (1, 4)),
    "inception": (["model=inception", "data=digits", "data.batch_size=256"], (2, 22)),
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


def fit_seconds(overrides: list[str], epochs: int) -> tuple[float, dict]:
    with tempfile.TemporaryDirectory() as out:
        metrics = run(compose([*QUIET, *overrides, f"trainer.max_epochs={epochs}"]), output_dir=out)
        record = json.loads((Path(out) / "metrics.json").read_text())
    return record["fit_s"], {"metrics": metrics, "train_samples": record["data_sizes"]["train"],
                             "params": record["params"]}


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
    for workload, (base, (short, long)) in WORKLOADS.items():
        base = [*base, f"data.num_samples={args.samples}"] if workload == "resnet18" else base
        flops = 6 * macs_per_image(base)
        for setting, extra in SETTINGS.items():
            t_short, info = fit_seconds([*base, *extra], short)
            t_long, info = fit_seconds([*base, *extra], long)
            images = (long - short) * info["train_samples"]
            rate = images / max(t_long - t_short, 1e-9)
            row = {"workload": workload, "setting": setting, "images_per_s": rate, "fit_short_s": t_short,
                   "fit_long_s": t_long, "peak_share": rate * flops / peaks[setting],
                   "test_acc": info["metrics"].get("test/acc")}
            results.append(row)
            print(f"{workload:10s} {setting:32s} {rate:10.0f} img/s  {100 * row['peak_share']:5.1f}% of peak  "
                  f"fit {t_short:.1f}s/{t_long:.1f}s  test/acc {row['test_acc']}", flush=True)
        fp32, fast = results[-2]["images_per_s"], results[-1]["images_per_s"]
        print(f"{workload}: speedup {fast / fp32:.2f}x")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"device": device, "torch": torch.__version__, "peaks": peaks, "results": results}, fh, indent=2)


if __name__ == "__main__":
    main()
