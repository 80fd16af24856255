"""Fault injection: run the real CLI in a subprocess, SIGKILL (or SIGTERM) it at a chosen moment, rerun, compare with a
clean run.

Used by tests/stages/test_crash_safety.py (one kill per kind of unit, a SIGTERM mid-stage) and
benchmarks/reliability.py (kills and SIGTERMs at random times, counted in the committed report).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from hf_condense.stages.run_folder import list_stages, read_stage

# PDD + MTT on digits, 2 stages: expert training (2 experts), in-stage checkpoints every 10 iterations, stage writes.
RECIPE = {
    "dataset": {"path": "sklearn/digits"},
    "model": {"name": "convnet_d2w16"},
    "augment": {"strategy": "color_crop_cutout_scale_rotate"},
    "method": {
        "name": "mtt",
        "iterations": 30,
        "syn_steps": 5,
        "expert_epochs": 1,
        "max_start_epoch": 2,
        "lr_img": 100,
        "num_experts": 2,
        "transition_epochs": 20,
        "checkpoint_every": 10,
    },
    "stages": {"count": 2, "ipc": 1, "scheme": "pdd"},
    "evaluation": {"runs": 1, "epochs": 5, "random_real": False},
    "seed": 0,
}


def write_recipe(folder: Path, name: str, eval_runs: int = 1, method: dict | None = None) -> Path:
    """The fault recipe (or another `method` section) writing into folder/name, with its own expert cache."""
    recipe = {**RECIPE, "output": {"dir": str(folder / name), "cache_dir": str(folder / f"{name}_cache")}}
    recipe["evaluation"] = {**RECIPE["evaluation"], "runs": eval_runs}
    recipe["method"] = method or RECIPE["method"]
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


@dataclass
class Run:
    """How a watched run ended: exit code, output, whether it was signalled, when it printed its first line."""

    returncode: int
    stdout: str
    stderr: str
    signalled: bool
    started_s: float | None  # seconds until its first line on stdout (start-up: imports and data), None if none
    seconds: float

    @property
    def terminated_cleanly(self) -> bool:
        """Ended by SIGTERM as the CLI promises: exit 143, its last line `terminated (SIGTERM): ...`, no traceback."""
        last = (self.stderr.strip().splitlines() or [""])[-1]
        return self.returncode == 143 and last.startswith("terminated (SIGTERM): ") and "Traceback" not in self.stderr


def watch_cli(
    recipe: Path,
    when: Callable[[float, float | None], bool] | None = None,
    sig: int = signal.SIGTERM,
    timeout: float = 600,
    processes: int = 1,
    module: str = "hf_condense.distill",
) -> Run:
    """Run `python -m <module> recipe` (under torchrun when processes > 1; stdout into recipe.out), send it `sig` as
    soon as `when(elapsed, started_s)` holds (polled every 20 ms) and wait for its end."""
    launcher = (
        ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"] if processes > 1 else []
    )
    out_path = recipe.with_suffix(".out")
    with open(out_path, "w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            [sys.executable, *launcher, "-m", module, str(recipe)], env=_env(), stdout=out, stderr=err, text=True
        )
        t0, started, signalled = time.monotonic(), None, False
        while proc.poll() is None:
            elapsed = time.monotonic() - t0
            if started is None and out_path.stat().st_size:
                started = elapsed
            if not signalled and when is not None and when(elapsed, started):
                proc.send_signal(sig)
                signalled = True
            if elapsed > timeout:
                proc.kill()
                raise TimeoutError(f"{recipe} ran over {timeout}s")
            time.sleep(0.02)
        seconds = time.monotonic() - t0
        out.seek(0)
        err.seek(0)
        return Run(proc.returncode, out.read(), err.read(), signalled, started, seconds)


def run_cli(
    recipe: Path,
    kill_when: Callable[[float], bool] | None = None,
    timeout: float = 600,
    processes: int = 1,
    module: str = "hf_condense.distill",
) -> bool:
    """Run `python -m <module> recipe` (under torchrun when processes > 1); SIGKILL it as soon as
    `kill_when(elapsed)` holds (polled every 20 ms). Returns True when it was killed, False when it finished (a
    failure raises)."""
    when = (lambda elapsed, _started: kill_when(elapsed)) if kill_when is not None else None
    run = watch_cli(recipe, when, signal.SIGKILL, timeout, processes, module)
    if run.signalled:
        return True
    if run.returncode != 0:
        raise RuntimeError(f"{recipe} exited {run.returncode}: {run.stderr[-2000:]}")
    return False


def run_cli_killed_at_write(recipe: Path, boundary: int, timeout: float = 600) -> int | bool:
    """Run `python -m hf_condense.distill recipe`, SIGKILLed just before its `boundary`-th write boundary
    (tests/write_killer.py). boundary < 0: run to the end and return how many boundaries it crossed; otherwise
    return whether it was killed (False: the run finished before reaching that boundary)."""
    count = recipe.with_suffix(".boundaries")
    killer = Path(__file__).with_name("write_killer.py")
    cmd = [sys.executable, str(killer), str(boundary), str(count), "hf_condense.distill", str(recipe)]
    proc = subprocess.run(
        cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=timeout
    )
    if proc.returncode == -signal.SIGKILL:
        return True
    if proc.returncode != 0:
        raise RuntimeError(f"{recipe} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return int(count.read_text()) if boundary < 0 else False


def same_stages(a: Path, b: Path, atol: float = 0.0) -> list[str]:
    """Differences between two finished output folders' stages (images within atol, bit-exact by default; labels;
    lr)."""
    problems = []
    if list_stages(a) != list_stages(b):
        return [f"stages {list_stages(a)} vs {list_stages(b)}"]
    for k in list_stages(a):
        x, y = read_stage(a / f"stage_{k}"), read_stage(b / f"stage_{k}")
        if not torch.allclose(x.images, y.images, rtol=0, atol=atol):
            problems.append(f"stage_{k}: images differ (max {float((x.images - y.images).abs().max()):.3g})")
        if not torch.equal(x.labels, y.labels) or abs(x.lr - y.lr) > atol:
            problems.append(f"stage_{k}: labels or lr differ ({x.lr} vs {y.lr})")
    return problems
