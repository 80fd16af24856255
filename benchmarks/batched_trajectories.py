"""K MTT trajectories per iteration: K plain unrolls one after another against one vmapped unroll of all K
(`method.vectorize_trajectories`), timed alternately in one process on the same draws, with their gradient agreement.

Shapes of the unroll benchmark (benchmarks/unroll_memory.py): CIFAR-10 32x32x3, ConvNet-D3W128, IPC 10, all images
in every step, syn_steps 20, DSA, random data. "per trajectory" is the vmapped time / K: the figure to set against
one plain unroll (the public code matches one trajectory per iteration).

    python benchmarks/batched_trajectories.py cuda     # writes benchmarks/results/batched_trajectories_cuda.{json,md}
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import timm
import torch
from timing import seconds_since, sync

import hf_condense  # noqa: F401  (registers the ConvNets with timm)
from hf_condense.core.io import write_json, write_text
from hf_condense.data.augment import DSA
from hf_condense.methods.unroll import batched_unroll_backward, unroll_backward
from hf_condense.models.functional import FlatParams

RESULTS = Path(__file__).resolve().parent / "results" / "batched_trajectories"
WIDTH, IPC, STEPS = 128, 10, 20


def measure(k: int, device: str, reps: int = 3) -> dict:
    """Best-of-`reps` seconds of K sequential plain unrolls and of one vmapped unroll, and the gradient difference."""
    torch.manual_seed(0)
    net = FlatParams(timm.create_model(f"convnet_d3w{WIDTH}", num_classes=10, in_chans=3, img_size=32).to(device))
    start = net.flatten()
    starts = start + 0.01 * torch.randn(k, len(start), device=device)
    targets = starts + 0.01 * torch.randn_like(starts)
    images = torch.randn(10 * IPC, 3, 32, 32, device=device, requires_grad=True)
    labels = torch.arange(10, device=device).repeat_interleave(IPC)
    alpha = torch.tensor(0.01, device=device, requires_grad=True)
    dsa, g = DSA(), torch.Generator().manual_seed(0)
    augs = [[dsa.sample(len(images), (32, 32), g).to(device) for _ in range(STEPS)] for _ in range(k)]

    def sequential():
        for start, target, aug in zip(starts, targets, augs):
            unroll_backward(net, start, target, alpha, lambda j, a=aug: (dsa.apply(images, a[j]), labels), STEPS)

    def batches(j):
        return torch.stack([dsa.apply(images, augs[i][j]) for i in range(k)]), labels.expand(k, -1)

    def together():
        batched_unroll_backward(net, starts, targets, alpha, batches, STEPS)

    times, grads, peak_gb = {"sequential": [], "vmapped": []}, {}, {}
    for _ in range(reps + 1):  # the first of each is a warm-up
        for name, fn in (("sequential", sequential), ("vmapped", together)):
            images.grad = alpha.grad = None
            if device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            sync(device)
            t0 = time.perf_counter()
            fn()
            times[name].append(seconds_since(t0, device))
            grads[name] = images.grad.clone()
            if device == "cuda":
                peak_gb[name] = torch.cuda.max_memory_allocated() / 1024**3
    s, v = min(times["sequential"][1:]), min(times["vmapped"][1:])
    row = {
        "trajectories": k,
        "sequential_s": s,
        "vmapped_s": v,
        "speedup": s / v,
        "vmapped_s_per_trajectory": v / k,
        "grad_rel_error": float((grads["vmapped"] - grads["sequential"]).norm() / grads["sequential"].norm()),
        "sequential_peak_gb": peak_gb.get("sequential"),
        "vmapped_peak_gb": peak_gb.get("vmapped"),
    }
    print(row, flush=True)
    return row


def main(device: str = "cpu") -> None:
    rows = [measure(k, device) for k in ((1, 2, 4, 8) if device == "cuda" else (1, 2))]
    one = rows[0]["sequential_s"]  # one plain unroll: the public code's iteration
    for r in rows:
        r["per_trajectory_vs_one_plain"] = r["vmapped_s_per_trajectory"] / one
    machine = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    results = Path(f"{RESULTS}_{device}")
    write_json(f"{results}.json", rows)
    lines = [
        f"ConvNet-D3W{WIDTH}, CIFAR-10 shapes, IPC {IPC}, syn_steps {STEPS}, DSA, {machine}; best of 3 after a "
        "warm-up, alternated. Memory: peak GPU memory allocated.",
        "",
        "| trajectories | K sequential plain unrolls (s) | one vmapped unroll (s) | speedup "
        "| vmapped s per trajectory | per trajectory vs one plain unroll | peak GB (sequential / vmapped) "
        "| grad rel. error |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        mem = (
            f"{r['sequential_peak_gb']:.2f} / {r['vmapped_peak_gb']:.2f}" if r["vmapped_peak_gb"] is not None else "–"
        )
        lines.append(
            f"| {r['trajectories']} | {r['sequential_s']:.3f} | {r['vmapped_s']:.3f} | {r['speedup']:.2f}x | "
            f"{r['vmapped_s_per_trajectory']:.3f} | {r['per_trajectory_vs_one_plain']:.2f} | {mem} | "
            f"{r['grad_rel_error']:.1e} |"
        )
    write_text(f"{results}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(*sys.argv[1:])
