#!/usr/bin/env bash
# The GPU checks, about 5-10 minutes on one GPU: the suite's GPU tests (fp16 with its gradient scaler, bf16,
# channels_last, compile, device-resident data), then the throughput benchmark (benchmarks/gpu.py). Results go to
# $OUT (default: the current folder): gpu-tests.log, gpu.json. Record them in benchmarks/RESULTS.md with the device.
# The tests run in one process (-n0): they share the one GPU.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-.}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu-device.txt"
{ python -m pytest -q -p no:cacheprovider -n0 -m gpu tests/; python -m pytest -q -p no:cacheprovider -n0 tests/scale/test_speed_options.py; } 2>&1 | tee "$out/gpu-tests.log"
timeout 480 python benchmarks/gpu.py --json "$out/gpu.json" 2>&1 | tee "$out/gpu-bench.log"
