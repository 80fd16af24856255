#!/usr/bin/env bash
# The speed benchmarks on any machine with a GPU, in under 10 minutes: the unroll and expert-training table
# (benchmarks/unroll_speed.py cuda: plain / default / candidates, among them the compiled per-step VJPs of
# method.compile_unroll, CUDA graphs by torch.compile's reduce-overhead mode) and
# vmapped trajectories against sequential ones (benchmarks/batched_trajectories.py cuda), TF32 off as the recipes'
# default (`tf32: false`) and then on, for its effect; results and logs to $OUT (default outputs/gpu_speed). Random
# data: no dataset needed. `bash benchmarks/gpu_speed.sh` with this project installed; a machine without `kornia` or
# `datasets` and no network takes the wheels `benchmarks/prepare_gpu_check.sh` writes to .whl/ (see gpu_check.sh).
set -uo pipefail
cd "$(dirname "$0")/.."
source benchmarks/device_env.sh
out="${OUT:-outputs/gpu_speed}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader || true
cd benchmarks
NVIDIA_TF32_OVERRIDE=0 timeout 330 python3 unroll_speed.py cuda > "$out/unroll_speed.log" 2>&1
NVIDIA_TF32_OVERRIDE=0 timeout 90 python3 batched_trajectories.py cuda > "$out/batched_fp32.log" 2>&1
cp results/batched_trajectories_cuda.md "$out/batched_trajectories_cuda_fp32.md" 2>/dev/null
timeout 90 python3 batched_trajectories.py cuda > "$out/batched_tf32.log" 2>&1  # cuDNN's default TF32
cp results/unroll_speed_cuda.* results/unroll_speed_cuda.partial.json results/batched_trajectories_cuda.* "$out"/ \
  2>/dev/null
tail -n 40 "$out"/*.log
exit 0
