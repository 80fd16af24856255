#!/usr/bin/env bash
# The Fashion-MNIST GPU comparison (benchmarks/fashion_mnist_gpu.py) in one device call: installs the carried wheels,
# runs its three rows side by side on the GPU, and copies the results and logs to $OUT.
# Prepare here first with `bash benchmarks/prepare_gpu_check.sh` (data copy in .data/, wheels in .whl/), then:
#   device run, carry [".data", ".whl"], timeout_s 600:  bash benchmarks/gpu_check.sh
# GPU_CHECK_SECONDS (default 540) bounds each row, so that whatever finished comes back inside the call.
set -uo pipefail
cd "$(dirname "$0")/.."
source benchmarks/device_env.sh
# TF32 off: float32 convolutions as on the CPU, where the same lr_lr never diverged (an H100 run at TF32 did)
export NVIDIA_TF32_OVERRIDE=0
export FASHION_MNIST_DIR="${FASHION_MNIST_DIR:-$PWD/.data/fashion_mnist}"
out="${OUT:-outputs/gpu_check}"
mkdir -p "$out"
python3 -c "import torch, datasets, kornia, timm; print(torch.__version__, torch.cuda.is_available() and \
torch.cuda.get_device_name(0), datasets.__version__, kornia.__version__, timm.__version__)" || exit 1
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader || true
# the row names come from fashion_mnist_gpu.ROWS, so the two cannot drift apart
names="from fashion_mnist_gpu import ROWS; print(*(r[0] for r in ROWS), sep=chr(10))"
mapfile -t rows < <(cd benchmarks && python3 -c "$names")
start=$(date +%s)
for i in "${!rows[@]}"; do
  (cd benchmarks && timeout "${GPU_CHECK_SECONDS:-540}" python3 fashion_mnist_gpu.py "${rows[$i]}") \
    > "$out/row_$i.log" 2>&1 &
done
wait
echo "rows done in $(( $(date +%s) - start )) s"
for i in "${!rows[@]}"; do echo "== ${rows[$i]}"; grep -v "it/s\]" "$out/row_$i.log" | tail -n 12; done
cp benchmarks/results/fashion_mnist_gpu_*it.json benchmarks/results/fashion_mnist_gpu_*it.md "$out"/ 2>/dev/null
[ -n "${EXTRA_OVERRIDES:-}" ] && cp outputs/bench_fashion_gpu/quick_try.* "$out"/ 2>/dev/null
exit 0
