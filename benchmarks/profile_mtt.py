"""Where an MTT distillation iteration's time goes: torch.profiler over a short run of the Fashion-MNIST recipe (ZCA,
syn_steps 30, IPC 10, ConvNet-D3W32), top operators by self CPU time (and by self CUDA time on a GPU), and seconds
per iteration from a second, unprofiled run. The experts are trained by a first warm-up run and cached, so both
timed runs are distillation (plus a one-epoch evaluation).

    python benchmarks/profile_mtt.py            # writes benchmarks/results/profile_mtt_<device>.md
"""

from __future__ import annotations

import shutil
import time

import torch
from accelerate import Accelerator
from fashion_mnist_cpu import DATA, RECIPE, ROOT
from torch.profiler import ProfilerActivity, profile

import hf_condense

WORK = ROOT / "outputs" / "profile_mtt"
RESULTS = ROOT / "benchmarks" / "results" / "profile_mtt"
TIMED, PROFILED = 40, 3  # iterations; a GPU trace of 10 took minutes to summarise


def recipe(iterations: int, num_experts: int = 2):
    """The profiled recipe, in a fresh output folder (the expert cache is kept)."""
    shutil.rmtree(WORK / f"run_{iterations}", ignore_errors=True)
    return hf_condense.load_recipe(
        RECIPE,
        [
            f"dataset.path={DATA}",
            f"output.dir={WORK / f'run_{iterations}'}",
            f"output.cache_dir={WORK / 'cache'}",
            "preprocess.zca=true",
            "method.syn_steps=30",
            f"method.iterations={iterations}",
            f"method.num_experts={num_experts}",
            "evaluation.runs=1",
            "evaluation.epochs=1",
            "evaluation.random_real=false",
        ],
    )


def main() -> None:
    acc = Accelerator()
    device = acc.device.type
    hf_condense.run(recipe(1), acc)  # experts and ZCA into the cache
    t0 = time.perf_counter()
    result = hf_condense.run(recipe(TIMED), acc)
    per_it = result.stages[-1].meta["seconds"] / TIMED
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities) as prof:
        hf_condense.run(recipe(PROFILED), acc)
    lines = [
        f"MTT on Fashion-MNIST (ZCA, syn_steps 30, IPC 10, ConvNet-D3W32) on {device}: {per_it:.3f} s per "
        f"distillation iteration ({TIMED} iterations, run {time.perf_counter() - t0:.0f} s in all). Profile of a "
        f"{PROFILED}-iteration run (with data loading and a one-epoch evaluation), top operators:",
        "",
        "```",
        prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25, max_name_column_width=50),
        "```",
    ]
    if device == "cuda":
        table = prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=15, max_name_column_width=50)
        lines += ["", "By self CUDA time:", "", "```", table, "```"]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    out = f"{RESULTS}_{device}.md"
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines[:1]), "->", out)


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
