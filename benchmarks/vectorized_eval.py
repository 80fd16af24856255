"""Vectorised networks vs the same networks one by one, timed alternately in one process; read the ratio.
Evaluation runs: K ConvNet-D3W32 trained on a synthetic set of Fashion-MNIST shape (IPC 10 and 50, 200 / IPC epochs)
with DSA. Experts (`method.expert_stack`): K ConvNet-D3W32 trained on 6000 real-shape images (batch 256, plain SGD,
DSA), one epoch.

    OMP_NUM_THREADS=1 python benchmarks/vectorized_eval.py
    python benchmarks/vectorized_eval.py cuda     # on a GPU: vectorized_eval_cuda.{json,md}, 3/5/10 networks
"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

import torch
from timing import seconds_since

from hf_condense.core.io import write_json, write_text
from hf_condense.data.augment import DSA
from hf_condense.methods.experts import EXPERT_SGD
from hf_condense.models import ModelConfig, build_model
from hf_condense.models.stacked import StackedNets
from hf_condense.models.training import NetGroup, TrainSchedule

RESULTS = Path(__file__).resolve().parent / "results" / "vectorized_eval"


def timed(group_cls, models, x, y, epochs: int, cfg: TrainSchedule, device: str) -> float:
    group = group_cls([copy.deepcopy(m).to(device) for m in models], cfg, 0.01)
    gens = [torch.Generator().manual_seed(i) for i in range(len(models))]
    t0 = time.perf_counter()
    group.fit(x, y, epochs, 0.01, cfg, DSA(), gens, device)
    return seconds_since(t0, device)


def timed_experts(group_cls, models, x, y, device: str) -> float:
    """One expert epoch of every model (SGD without momentum, batch 256, DSA), stacked or one by one."""
    group = group_cls([copy.deepcopy(m).to(device) for m in models], EXPERT_SGD, 0.01)
    gens = [torch.Generator().manual_seed(i) for i in range(len(models))]
    t0 = time.perf_counter()
    group.train_epoch(x, y, 256, DSA(), gens, device)
    return seconds_since(t0, device)


def networks(k: int) -> list[torch.nn.Module]:
    """K ConvNet-D3W32 for Fashion shapes, seeded 0..K-1."""
    out = []
    for s in range(k):
        torch.manual_seed(s)
        out.append(build_model(ModelConfig(name="convnet_d3w32"), 10, 1, 28))
    return out


def row(what: str, ipc, k: int, epochs: int, seq: list[float], vec: list[float]) -> dict:
    """A result row from alternated timings (best of each)."""
    s, v = min(seq), min(vec)
    out = {"what": what, "ipc": ipc, "networks": k, "epochs": epochs, "sequential_s": s, "vectorised_s": v}
    out["speedup"] = s / v
    print(out, flush=True)
    return out


def main(device: str = "cpu") -> None:
    cfg, rows = TrainSchedule(), []
    gpu = device == "cuda"
    results = Path(f"{RESULTS}_{device}") if gpu else RESULTS
    for ipc in (10, 50):
        x, y = torch.randn(10 * ipc, 1, 28, 28), torch.arange(10).repeat_interleave(ipc)
        for k in (3, 5, 10) if gpu else (3, 5):
            models, seq, vec = networks(k), [], []
            epochs = 200 // ipc
            for _ in range(3):  # alternate, so that load changes hit both alike (on a GPU the first is a warm-up)
                seq.append(timed(NetGroup, models, x, y, epochs, cfg, device))
                vec.append(timed(StackedNets, models, x, y, epochs, cfg, device))
            rows.append(row("evaluation runs", ipc, k, epochs, seq, vec))
    x, y = torch.randn(6000, 1, 28, 28), torch.randint(0, 10, (6000,))
    for k in (2, 4, 10) if gpu else (2, 4):
        models, seq, vec = networks(k), [], []
        for _ in range(3 if gpu else 2):
            seq.append(timed_experts(NetGroup, models, x, y, device))
            vec.append(timed_experts(StackedNets, models, x, y, device))
        rows.append(row("experts", None, k, 1, seq, vec))
    write_json(f"{results}.json", rows)
    lines = [
        "| networks trained | IPC | networks | epochs | sequential (s) | vectorised (s) | speedup |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['what']} | {r['ipc'] or '–'} | {r['networks']} | {r['epochs']} | {r['sequential_s']:.2f} | "
        f"{r['vectorised_s']:.2f} | {r['speedup']:.2f}x |"
        for r in rows
    ]
    write_text(f"{results}.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
