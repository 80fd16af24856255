"""Expert training on real data as MTT runs it: plain (ATen's avg_pool2d, whole batches: the library before its
pooling form and micro-batch rule), eager (the library's pooling form and CPU micro-batch rule) and torch.compile
(`method.expert_compile`, on by default for large CPU jobs: `hf_condense.models.compiling`).

Fashion-MNIST train split (60,000 images, 28 px), batch 256, DSA, SGD at lr 0.01 without momentum (the experts'
schedule), ConvNet-D3W32 and D3W128; each mode in a fresh process (compiled code is per process), two epochs each:
the first includes compiling, the second is the steady rate. Resumable: finished configurations are kept in
results/expert_speed.partial.json.

    HF_CONDENSE_DATASETS=<folder of local copies> python benchmarks/expert_speed.py   # ~35 min on 2 cores
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from baseline import aten_pooling

from hf_condense.core.io import write_json, write_text

RESULTS = Path(__file__).resolve().parent / "results" / "expert_speed"
MODES = ("plain", "eager", "compiled")
CONFIGS = [(width, mode) for width in (32, 128) for mode in MODES]
EPOCHS = 2


def measure(width: int, mode: str) -> dict:
    """Seconds of each of EPOCHS expert epochs of ConvNet-D3W{width} on Fashion-MNIST, and the final train loss."""
    from hf_condense.data.augment import DSA
    from hf_condense.data.sources import DatasetConfig, load_real_data
    from hf_condense.models import ModelConfig, build_model
    from hf_condense.models.training import train_epoch

    data = load_real_data(DatasetConfig(path="zalando-datasets/fashion_mnist"))
    x = (data.train_x.float() / 255 - 0.2860) / 0.3530
    torch.manual_seed(0)
    model = build_model(ModelConfig(name=f"convnet_d3w{width}"), 10, 1, 28)
    if mode == "plain":
        aten_pooling(model)
    chunk, compile = (0 if mode == "plain" else None), mode == "compiled"
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    dsa, g = DSA(), torch.Generator().manual_seed(0)
    seconds, values = [], {}
    for _ in range(EPOCHS):
        t0 = time.perf_counter()
        values = train_epoch(
            model, opt, x, data.train_y, 256, dsa, g, torch.device("cpu"), micro_batch=chunk, compile=compile
        )
        seconds.append(time.perf_counter() - t0)
    return {"width": width, "mode": mode, "epoch_seconds": seconds, **values}


def main() -> None:
    partial = Path(f"{RESULTS}.partial.json")
    done = json.loads(partial.read_text()) if partial.exists() else {}
    for width, mode in CONFIGS:
        name = f"W{width} {mode}"
        if name not in done:
            child = [sys.executable, __file__, "--child", str(width), mode]
            out = subprocess.run(child, capture_output=True, text=True)
            lines = out.stdout.strip().splitlines()
            done[name] = json.loads(lines[-1]) if out.returncode == 0 and lines else {"error": out.stderr[-300:]}
            write_json(partial, done)
            print(name, done[name], flush=True)
    rows = [
        "Expert epochs on Fashion-MNIST (60,000 images, batch 256, DSA, SGD), "
        f"{os.cpu_count()}-core CPU, torch {torch.__version__}, {torch.get_num_threads()} threads; one run of "
        "`python benchmarks/expert_speed.py`, each mode in a fresh process. Epoch 1 includes compiling.",
        "",
        "| model | mode | epoch 1 (s) | epoch 2 (s) | epoch 2 speed-up over plain | train loss after 2 epochs |",
        "|---|---|---|---|---|---|",
    ]
    for width in sorted({w for w, _ in CONFIGS}):
        plain = done.get(f"W{width} plain", {})
        for mode in MODES:
            r = done.get(f"W{width} {mode}", {})
            if "epoch_seconds" not in r:
                rows.append(f"| ConvNet-D3W{width} | {mode} | failed: {r.get('error', 'not run')[:80]} | | | |")
                continue
            first, second = r["epoch_seconds"][0], r["epoch_seconds"][-1]
            ratio = plain["epoch_seconds"][-1] / second if "epoch_seconds" in plain else float("nan")
            rows.append(
                f"| ConvNet-D3W{width} | {mode} | {first:.1f} | {second:.1f} | {ratio:.2f}x | {r['loss']:.4f} |"
            )
    write_json(f"{RESULTS}.json", done)
    write_text(f"{RESULTS}.md", "\n".join(rows) + "\n")
    partial.unlink()
    print(Path(f"{RESULTS}.md").read_text())


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(measure(int(sys.argv[2]), sys.argv[3])))
    else:
        main()
