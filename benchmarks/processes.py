"""N processes vs 1 for the distillation itself: the same recipe run by the real CLI in one process and under
torchrun in two (gloo, one thread per process), timed alternately; read the ratio of stage times and check the
images agree.

MTT matches 2 expert trajectories per iteration (one per process when split); DSA splits its classes. Experts are
built once beforehand, so the stage time is distillation only. Fashion-MNIST, ConvNet-D3W32, IPC 10, one stage.

    python benchmarks/processes.py [--data ../shared/datasets/fashion_mnist]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hf_condense.stages.run_folder import RunFolder, read_stage  # noqa: E402
from tests.faults import run_cli  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "processes"
METHODS = {
    "mtt (2 trajectories / iteration)": {
        "name": "mtt",
        "iterations": 30,
        "trajectories": 2,
        "syn_steps": 20,
        "expert_epochs": 2,
        "max_start_epoch": 4,
        "num_experts": 2,
        "lr_img": 100,
        "lr_teacher": 0.01,
    },
    "dsa (10 classes)": {"name": "dsa", "iterations": 3, "batch_real": 128},
}


def recipe(data: str, method: dict, out: Path, cache: Path) -> dict:
    return {
        "dataset": {"path": data},
        "model": {"name": "convnet_d3w32"},
        "method": method,
        "stages": {"count": 1, "ipc": 10},
        "evaluation": {"runs": 2, "epochs": 20, "random_real": False},
        "output": {"dir": str(out), "cache_dir": str(cache)},
        "seed": 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/datasets/fashion_mnist"))
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for label, method in METHODS.items():
            times: dict[int, list[float]] = {1: [], 2: []}
            stages = {}
            for r in range(args.repeats):
                for n in (1, 2) if r % 2 == 0 else (2, 1):  # alternate, so that load changes hit both alike
                    out = work / f"{method['name']}_{n}_{r}"
                    path = out.with_suffix(".yaml")
                    path.write_text(yaml.safe_dump(recipe(args.data, method, out, work / "cache")))
                    if method["name"] == "mtt" and r == 0 and n == 1:
                        run_cli(path, module="hf_condense.experts", timeout=3600)
                    run_cli(path, processes=n, timeout=3600)
                    times[n].append(RunFolder(out).stage_meta(1)["seconds"])
                    stages[n] = read_stage(out / "stage_1").images
            one, two = min(times[1]), min(times[2])
            diff = float((stages[1] - stages[2]).abs().max())
            rows.append({"method": label, "one_s": one, "two_s": two, "speedup": one / two, "max_image_diff": diff})
            print(rows[-1], flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{RESULTS}.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = [
        f"Stage time (distillation only, best of {args.repeats}), one thread per process, {os.cpu_count()}"
        f"-core machine.",
        "",
        "| method | 1 process (s) | 2 processes (s) | speedup | max image difference |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['method']} | {r['one_s']:.1f} | {r['two_s']:.1f} | {r['speedup']:.2f}x | {r['max_image_diff']:.2g} |"
        for r in rows
    ]
    Path(f"{RESULTS}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
