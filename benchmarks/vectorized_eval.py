"""Vectorised evaluation runs vs the same runs one by one: K networks of ConvNet-D3W32 trained on a synthetic set
of Fashion-MNIST shape (IPC 10 and 50, 200 / IPC epochs) with DSA, timed alternately in one process; read the ratio.

    OMP_NUM_THREADS=1 python benchmarks/vectorized_eval.py
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import torch

from hf_condense.augment import DSA
from hf_condense.config import EvalConfig, ModelConfig
from hf_condense.models import build_model
from hf_condense.training import NetGroup
from hf_condense.vectorized import StackedNets

RESULTS = Path(__file__).resolve().parent / "results" / "vectorized_eval"


def timed(group_cls, models, x, y, epochs: int, cfg: EvalConfig) -> float:
    group = group_cls([copy.deepcopy(m) for m in models], cfg, 0.01)
    gens = [torch.Generator().manual_seed(i) for i in range(len(models))]
    t0 = time.perf_counter()
    group.fit(x, y, epochs, 0.01, cfg, DSA(), gens, "cpu")
    return time.perf_counter() - t0


def main() -> None:
    cfg, rows = EvalConfig(), []
    for ipc in (10, 50):
        x, y = torch.randn(10 * ipc, 1, 28, 28), torch.arange(10).repeat_interleave(ipc)
        for k in (3, 5):
            models = []
            for s in range(k):
                torch.manual_seed(s)
                models.append(build_model(ModelConfig(name="convnet_d3w32"), 10, 1, 28))
            seq, vec = [], []
            epochs = 200 // ipc
            for _ in range(3):  # alternate, so that load changes hit both alike
                seq.append(timed(NetGroup, models, x, y, epochs, cfg))
                vec.append(timed(StackedNets, models, x, y, epochs, cfg))
            s, v = min(seq), min(vec)
            rows.append(
                {"ipc": ipc, "networks": k, "epochs": epochs, "sequential_s": s, "vectorised_s": v, "speedup": s / v}
            )
            print(rows[-1], flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{RESULTS}.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = ["| IPC | networks | epochs | sequential (s) | vectorised (s) | speedup |", "|---|---|---|---|---|---|"]
    lines += [
        f"| {r['ipc']} | {r['networks']} | {r['epochs']} | {r['sequential_s']:.2f} | {r['vectorised_s']:.2f} "
        f"| {r['speedup']:.2f}x |"
        for r in rows
    ]
    Path(f"{RESULTS}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
