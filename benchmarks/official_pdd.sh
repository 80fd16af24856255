#!/usr/bin/env bash
# Run the official PDD code (VITA-Group/ProgressiveDD) at the CIFAR-10 CPU profile's settings, beside this library's
# twin row (benchmarks/tables/cifar10_pdd_twins.yaml), as docs/findings.md section 8 reports it. Nothing of that
# repository enters this one: it is cloned into a scratch folder, three CPU-only crashes are mended there with sed
# (each said below), and its logs are read.
#
#   bash benchmarks/official_pdd.sh SCRATCH [CIFAR10_COPY]      # e.g. /tmp/pdd ../shared/datasets/cifar10
#
# Needs: git (or an existing checkout in SCRATCH/repo), this project's environment (torch, kornia, datasets) plus
# wandb (it logs offline). About an hour on 2 CPU cores.
set -euo pipefail
scratch=$(realpath -m "$1"); data=${2:-../shared/datasets/cifar10}
mkdir -p "$scratch"
[ -d "$scratch/repo" ] || git clone -q https://github.com/VITA-Group/ProgressiveDD "$scratch/repo"
cd "$scratch/repo"
# 1. On a CPU `p.detach().cpu()` is the live parameter itself, so every snapshot of an expert aliases its final
#    weights and the first matching loss is inf: clone, as `.cpu()` copies on a GPU.
sed -i 's/params.append(p.detach().cpu())/params.append(p.detach().cpu().clone())/' buffer_mtt.py
sed -i 's/\[p.detach().cpu() for p in teacher_net.parameters()\]/[p.detach().cpu().clone() for p in teacher_net.parameters()]/g' distill_mtt.py
# 2. A hard-coded .cuda() when saving images.
sed -i 's/image_save = image_syn.cuda()/image_save = image_syn.to(args.device)/' distill_mtt.py
# 3. The stage driver reads args.use_more_at_first_interval, which its parser never defines.
grep -q use_more_at_first_interval\' distill_mtt.py || sed -i "s/    parser.add_argument('--override_epoch_eval_train'/    parser.add_argument('--use_more_at_first_interval', action='store_true')\n    parser.add_argument('--override_epoch_eval_train'/" distill_mtt.py
# CIFAR-10 from the local copy (the same JPEG images this library reads), in torchvision's pickle layout; torchvision's
# md5 check of the original files is skipped by the launcher below.
python - "$data" <<'PY'
import os, pickle, sys
import numpy as np
from datasets import load_dataset
ds, out = load_dataset(sys.argv[1]), "data/cifar-10-batches-py"
os.makedirs(out, exist_ok=True)
def arrays(split):
    x = np.stack([np.asarray(im.convert("RGB"), dtype=np.uint8) for im in split["img"]])
    return x.transpose(0, 3, 1, 2).reshape(len(x), -1), list(split["label"])
x, y = arrays(ds["train"])
for i in range(5):
    pickle.dump({"data": x[i * 10000:(i + 1) * 10000], "labels": y[i * 10000:(i + 1) * 10000]}, open(f"{out}/data_batch_{i + 1}", "wb"))
x, y = arrays(ds["test"])
pickle.dump({"data": x, "labels": y}, open(f"{out}/test_batch", "wb"))
pickle.dump({"label_names": ds["train"].features["label"].names}, open(f"{out}/batches.meta", "wb"))
PY
cat > launch.py <<'PY'
import runpy, sys
import torchvision.datasets.cifar as cifar
cifar.check_integrity = lambda *a, **k: True
cifar.CIFAR10._check_integrity = lambda self: True
cifar.CIFAR10.download = lambda self: None
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
PY
export WANDB_MODE=offline
# The profile: ConvNet-D3W32, ZCA, 4 experts x 6 epochs; PDD 2 stages x IPC 5, 300 iterations of 20 steps on
# classes x 5 images (its default batch_syn), transitions and evaluation 300 epochs, 3 evaluation networks,
# evaluation every 100 iterations (its default eval_it).
python launch.py buffer_mtt.py --dataset=CIFAR10 --model=ConvNetW32 --train_epochs=6 --num_experts=4 --zca \
  --save_interval 4 --buffer_path=buffers --data_path=data > buffer.log 2>&1
python launch.py distill_mtt.py --dataset=CIFAR10 --model=ConvNetW32 --ipc=5 --num_intervals 2 --syn_steps=20 \
  --expert_epochs=2 --max_start_epoch=4 --zca --lr_img=1000 --lr_lr=1e-05 --lr_teacher=0.01 --Iteration=300 \
  --eval_it=100 --num_eval=3 --epoch_eval_train=300 --override_epoch_eval_train=300 --save_interval 4 \
  --data_path=data --root_log_dir logged_files > distill.log 2>&1
grep -a "Evaluate [0-9]\|iter = \|best lr" distill.log
