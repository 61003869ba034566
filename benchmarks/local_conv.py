"""local_conv (unfold + einsum) against a naive loop over output positions: forward + backward time, peak memory.

    python benchmarks/local_conv.py [--repeats 5]

Prints a Markdown table for three 32x32 settings; the extra memory of the vectorised form is the unfolded patch
tensor (batch x C*k*k x positions).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from cnnrun import build_model


def naive(x, weight, bias, k, out_hw):
    """A Python loop over output positions, each with its own kernel (the definition, chapter 5.20)."""
    n = x.shape[0]
    rows = []
    for i in range(out_hw[0]):
        cols = []
        for j in range(out_hw[1]):
            patch = x[:, :, i:i + k, j:j + k].reshape(n, -1)
            cols.append(patch @ weight[i, j].T + bias[i, j])
        rows.append(torch.stack(cols, dim=-1))
    return torch.stack(rows, dim=-2)


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench(batch: int, channels: int, out: int, size: int, kernel: int, repeats: int) -> None:
    torch.manual_seed(0)
    model = build_model({"name": "b", "layers": [{"local_conv": {"out_channels": out, "kernel_size": kernel}}]},
                        (channels, size, size))
    layer = model.layers[0]
    x = torch.randn(batch, channels, size, size, requires_grad=True)
    out_hw = model.output_shape[1:]

    def ours():
        model(x).sum().backward()

    def loop():
        naive(x, layer.weight, layer.bias, kernel, out_hw).sum().backward()

    torch.testing.assert_close(model(x), naive(x, layer.weight, layer.bias, kernel, out_hw), atol=1e-4, rtol=1e-4)
    ours(), loop()  # warm-up
    t_ours, t_loop = timed(ours, repeats), timed(loop, max(1, repeats // 2))
    params = sum(p.numel() for p in model.parameters())
    patches = batch * channels * kernel ** 2 * out_hw[0] * out_hw[1] * 4
    peak = ""
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        m, xx = model.cuda(), x.detach().cuda().requires_grad_(True)
        m(xx).sum().backward()
        peak = f" | CUDA peak {torch.cuda.max_memory_allocated() / 2**20:.1f} MiB"
        model.cpu()
    print(f"| {batch}x{channels}x{size}x{size} | {out} of {kernel}x{kernel} | {params:,} | {t_ours * 1e3:.1f} | "
          f"{t_loop * 1e3:.1f} | {t_loop / t_ours:.1f}x | {patches / 2**20:.1f} MiB{peak} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, forward + backward, median of repeats")
    print("| input | filters | params | local_conv ms | naive loop ms | speed-up | unfolded patches (extra memory) |")
    print("|---|---|---:|---:|---:|---:|---|")
    for batch, channels, out in ((8, 3, 16), (32, 3, 64), (32, 16, 32)):
        bench(batch, channels, out, 32, 3, a.repeats)


if __name__ == "__main__":
    main()
