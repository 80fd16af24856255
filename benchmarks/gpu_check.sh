#!/usr/bin/env bash
# The GPU tier's most informative part in one device call (< 10 minutes): the table benchmarks/tables/
# cifar10_gpu_check.yaml (CIFAR-10 IPC 10, ConvNet-D3W128: random real, MTT, PDD + MTT 2 x 5 at equal compute) run
# by benchmarks/run.py, TF32 off; results (json, md, png) and the log to $OUT (default outputs/gpu_check).
# On any machine with a GPU and this project installed: `bash benchmarks/gpu_check.sh`; CIFAR-10 comes from
# $HF_CONDENSE_DATASETS (local copies laid out like the Hub repos; default .data/) or, with HF_HUB_OFFLINE=0, the Hub.
# A machine that lacks `datasets` or `kornia` and the network: `bash benchmarks/prepare_gpu_check.sh` on one that has
# them writes the data to .data/ and the wheels to .whl/; copy both beside the checkout and the script installs them.
# GPU_CHECK_SECONDS (default 540, for a 10-minute slot) bounds the table, so that whatever finished comes back inside the call; the rows
# write their results as each finishes. GPU_CHECK_TABLE runs another table the same way (e.g. cifar10_gpu on a
# longer lease); a CPU dry run: GPU_CHECK_TABLE=digits_tiny bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
source benchmarks/device_env.sh
# TF32 off: float32 convolutions as on the CPU, where the same lr_lr never diverged (an H100 run at TF32 did)
export NVIDIA_TF32_OVERRIDE=0 HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" HF_DATASETS_OFFLINE="${HF_HUB_OFFLINE:-1}"
export HF_CONDENSE_DATASETS="${HF_CONDENSE_DATASETS:-$PWD/.data}"
table="${GPU_CHECK_TABLE:-cifar10_gpu_check}"
out="${OUT:-outputs/gpu_check}"
mkdir -p "$out"
python3 -c "import torch, datasets, kornia, timm; print(torch.__version__, torch.cuda.is_available() and \
torch.cuda.get_device_name(0), datasets.__version__, kornia.__version__, timm.__version__)" || exit 1
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader 2>/dev/null || true
start=$(date +%s)
timeout "${GPU_CHECK_SECONDS:-540}" python3 benchmarks/run.py "$table" --runs outputs/gpu_runs --results "$out" \
  > "$out/$table.log" 2>&1
echo "rc $? after $(( $(date +%s) - start )) s"
grep -v "it/s\]\|epoch/s\]" "$out/$table.log" | tail -n 40
cat "$out/$table.md" 2>/dev/null
exit 0
