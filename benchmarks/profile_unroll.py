"""Where a distillation iteration's time goes, for the two unrolled methods (MTT, RaT-BPTT): torch.profiler over a
short run of the Fashion-MNIST recipe (ConvNet-D3W32, IPC 10, ZCA), top operators by self CPU time (and by self CUDA
time on a GPU), and seconds per iteration from a second, unprofiled run. A warm-up run first fills the cache
(experts, ZCA), so the timed runs are distillation (plus data loading and a one-epoch evaluation).

MTT: syn_steps 30; RaT-BPTT: the CPU benchmark's window 10, horizon 40, real batch 1000.

    python benchmarks/profile_unroll.py mtt         # writes benchmarks/results/profile_mtt_<device>.md
    python benchmarks/profile_unroll.py ratbptt
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from torch.profiler import ProfilerActivity, profile

import hf_condense

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "fashion_mnist_mtt_cpu.yaml"  # its Hub id read through HF_CONDENSE_DATASETS offline
WORK = ROOT / "outputs" / "profile_unroll"
RESULTS = ROOT / "benchmarks" / "results"
PROFILED = 3  # iterations; a GPU trace of 10 took minutes to summarise
METHODS = {
    "mtt": ("MTT (syn_steps 30)", ["method.syn_steps=30", "method.num_experts=2"]),
    "ratbptt": (
        "RaT-BPTT (window 10, horizon 40)",
        ["method={name: ratbptt, window: 10, horizon: 40, lr_img: 0.01, batch_real: 1000}"],
    ),
}


def recipe(method: str, iterations: int):
    """The profiled recipe, in a fresh output folder (the cache is kept)."""
    shutil.rmtree(WORK / f"{method}_{iterations}", ignore_errors=True)
    return hf_condense.load_recipe(
        RECIPE,
        [
            f"output.dir={WORK / f'{method}_{iterations}'}",
            f"output.cache_dir={WORK / 'cache'}",
            "preprocess.zca=true",
            *METHODS[method][1],
            f"method.iterations={iterations}",
            "evaluation.runs=1",
            "evaluation.epochs=1",
            "evaluation.random_real=false",
        ],
    )


def main(method: str = "mtt") -> None:
    acc = Accelerator()
    device = acc.device.type
    timed = 40 if device == "cuda" else 10
    hf_condense.run(recipe(method, 1), acc)  # experts and ZCA into the cache
    t0 = time.perf_counter()
    result = hf_condense.run(recipe(method, timed), acc)
    per_it = result.stages[-1].meta["seconds"] / timed
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities) as prof:
        hf_condense.run(recipe(method, PROFILED), acc)
    lines = [
        f"{METHODS[method][0]} on Fashion-MNIST (ZCA, IPC 10, ConvNet-D3W32) on {device}: {per_it:.3f} s per "
        f"distillation iteration ({timed} iterations, run {time.perf_counter() - t0:.0f} s in all). Profile of a "
        f"{PROFILED}-iteration run (with data loading and a one-epoch evaluation), top operators:",
        "",
        "```",
        prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25, max_name_column_width=50),
        "```",
    ]
    if device == "cuda":
        table = prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=15, max_name_column_width=50)
        lines += ["", "By self CUDA time:", "", "```", table, "```"]
    out = RESULTS / f"profile_{method}_{device}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(lines[0], "->", out)


if __name__ == "__main__":
    torch.manual_seed(0)
    main(*sys.argv[1:])
