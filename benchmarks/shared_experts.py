"""Shared experts end to end on the CIFAR-10 CPU profile (issue #64): the profile's experts pushed to a local folder in
the Hub repo layout, then two recipes, each with a fresh cache, that name that folder in `method.experts`; their logs
show that neither trains an expert.

    HF_CONDENSE_DATASETS=../shared/datasets python benchmarks/shared_experts.py [EXPERT_CACHE]

EXPERT_CACHE: a cache that already holds the profile's experts (default benchmarks/runs/cifar10_pdd_twins/cache, where
the twin table trained them; otherwise they are trained first). The recipes run only a few iterations and one short
evaluation: this measures reuse, not accuracy. Writes benchmarks/results/shared_experts.md.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from hf_condense.core.io import write_text

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "benchmarks" / "runs" / "shared_experts"
RECIPE = ROOT / "recipes" / "cifar10_mtt_cpu.yaml"
SHORT = ["method.iterations=5", "evaluation.runs=1", "evaluation.epochs=2", "evaluation.random_real=false"]
USERS = {  # two recipes that use the profile's experts
    "MTT, IPC 10": [],
    "MTT, IPC 1": ["stages.ipc=1"],
}


def cli(*args: str) -> tuple[float, str]:
    """(seconds, combined output) of one hf-condense command; stops on failure."""
    t0 = time.perf_counter()
    entry = "import sys; from hf_condense.cli import main; sys.exit(main(sys.argv[1:]))"  # the hf-condense script
    done = subprocess.run([sys.executable, "-c", entry, *args], capture_output=True, text=True)
    out = done.stdout + done.stderr
    if done.returncode:
        raise SystemExit(f"`hf-condense {' '.join(args)}` failed ({done.returncode}):\n{out[-3000:]}")
    return time.perf_counter() - t0, out


def expert_lines(out: str) -> list[str]:
    """The log lines that say where experts came from, or that they were trained (paths relative to the clone)."""
    said = [line.strip() for line in out.splitlines() if line.startswith(("experts", "wrote")) and "%|" not in line]
    return [line.replace(f"{ROOT}/", "") for line in said]


def trained(said: list[str]) -> str:
    """What a build prints before training experts ('experts: N of M expert(s) x E epoch(s) ... into ...')."""
    builds = [line for line in said if " expert(s) x " in line]
    return "; ".join(builds) if builds else "none"


def main(cache: str = str(ROOT / "benchmarks" / "runs" / "cifar10_pdd_twins" / "cache")) -> None:
    shutil.rmtree(RUNS, ignore_errors=True)
    folder = RUNS / "cifar10_convnet_d3w32_experts"
    seconds, out = cli("experts", "push", str(RECIPE), str(folder), "--folder", f"output.cache_dir={cache}")
    rows = [("push to a local folder", seconds, expert_lines(out))]
    for name, overrides in USERS.items():
        fresh = RUNS / f"cache_{len(rows)}"
        seconds, out = cli(
            "distill",
            str(RECIPE),
            *overrides,
            *SHORT,
            f"method.experts={folder}",
            f"output.dir={RUNS / f'run_{len(rows)}'}",
            f"output.cache_dir={fresh}",
        )
        rows.append((f"{name}, fresh cache", seconds, expert_lines(out)))
    lines = [
        "# Shared experts on the CIFAR-10 CPU profile",
        "",
        "One run of `python benchmarks/shared_experts.py` (module docstring): the profile's 4 experts x 6 epochs "
        "pushed with `hf-condense experts push ... --folder`, then two recipes naming the folder in `method.experts`, "
        f"each with an empty cache, {', '.join(SHORT)}.",
        "",
        "| step | wall time (s) | experts trained here | what the log says about experts |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {name} | {seconds:.0f} | {trained(said)} | {'<br>'.join(said) or '-'} |" for name, seconds, said in rows
    ]
    write_text(ROOT / "benchmarks" / "results" / "shared_experts.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(*sys.argv[1:])
