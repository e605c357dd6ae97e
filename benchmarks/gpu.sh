#!/usr/bin/env bash
# Every GPU measurement of the benchmarks, in one run of under eight minutes on a machine
# with one NVIDIA GPU: the device's roofs (device_peaks.py), gradient-descent throughput at
# 10^4 seeds against the 1e9 seed-steps/s target (gd_throughput.py), the scans at batch 64
# and T = 10^4 against the bandwidth floor (scan.py), the gradient flow of 10^4 seeds
# (gradient_flow.py --pair) and memory from 10^4 to 10^5 seeds (memory.py). Each step has
# a time limit of its own; one that fails or runs past it is recorded, and the rest still
# run. Prints jax.devices() first; writes each script's JSON and log, $OUT/gpu.json (every
# step's status, time and results) and $OUT/gpu.md (a table with a row per step).
#
#   OUT=rnnflow-results/gpu bash benchmarks/gpu.sh
#   RNNFLOW_GPU_TINY=1 bash benchmarks/gpu.sh    # or --tiny: the same steps at the smallest
#                                                # sizes, on the CPU, in about 90 s
#
# PYTHON names the interpreter (default: python). The exit status is non-zero if a step
# did not finish.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
args=(--gpu --out "${OUT:-rnnflow-results/gpu}")
if [[ "${RNNFLOW_GPU_TINY:-0}" == 1 || "${1:-}" == --tiny ]]; then
    args+=(--tiny)
elif command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi -L || true
fi
exec "${PYTHON:-python}" "$here/run.py" "${args[@]}"
