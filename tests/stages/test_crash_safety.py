"""kill -9 of the real CLI inside each kind of unit (an expert, a checkpointed stage, between stages), then the same
command again: it resumes from the last finished unit and ends with the stages an uninterrupted run makes. SIGTERM
(preemption) stops it cleanly, keeping the iterations of the stage in progress."""

from __future__ import annotations

from pathlib import Path

import pytest
from safetensors import safe_open

from ..faults import run_cli, run_cli_killed_at_write, same_stages, watch_cli, write_recipe

# One worker runs this module under pytest-xdist, so its reference run (a module fixture) is made once.
pytestmark = pytest.mark.xdist_group("crash_safety")


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("faults")
    assert run_cli(write_recipe(folder, "reference")) is False
    return folder / "reference"


@pytest.mark.heavy
@pytest.mark.parametrize(
    "unit,marker",
    [
        # the first expert is on disk: the kill lands while the second trains
        ("expert", lambda out, cache: next(iter(cache.glob("experts/*/expert_0000.safetensors")), None)),
        # stage 1's first in-stage checkpoint is on disk: the kill lands mid-stage
        (
            "checkpointed iteration",
            lambda out, cache: next(iter(out.glob(".checkpoints/stage_1/*.safetensors")), None),
        ),
        # stage 1 is written: the kill lands in stage 2 (its transition experts or its iterations)
        ("stage", lambda out, cache: (out / "stage_1" / "stage.json") if (out / "stage_1").is_dir() else None),
    ],
)
def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path, reference, unit, marker):
    recipe = write_recipe(tmp_path, "killed")
    out, cache = tmp_path / "killed", tmp_path / "killed_cache"
    assert run_cli(recipe, lambda _t: marker(out, cache) is not None), f"the run finished before the {unit} marker"
    assert not (out / "stage_2").exists()
    assert run_cli(recipe) is False
    assert same_stages(reference, out) == []
    assert not list(out.glob(".hf_condense-tmp-*")), "temporary files left behind after the resumed run"


@pytest.mark.heavy
@pytest.mark.parametrize("boundary", [0, 3])
def test_a_kill_between_the_first_writes_of_a_run_resumes(tmp_path, reference, boundary):
    """The first writes of a run (run.json, recipe.yaml, preprocessing, ...): a SIGKILL before the first of them, or
    before the fourth, leaves a folder the same command takes up again (benchmarks/reliability.py kills before every
    one of a run's 50 write boundaries; results/reliability.md)."""
    recipe = write_recipe(tmp_path, "killed")
    assert run_cli_killed_at_write(recipe, boundary) is True
    assert run_cli(recipe) is False
    assert same_stages(reference, tmp_path / "killed") == []


@pytest.mark.heavy
def test_sigterm_mid_stage_keeps_its_iterations_and_the_rerun_ends_as_an_uninterrupted_run(tmp_path, reference):
    recipe = write_recipe(tmp_path, "terminated")
    checkpoint = tmp_path / "terminated" / ".checkpoints" / "stage_1" / "mtt.safetensors"
    stopped = watch_cli(recipe, lambda *_: checkpoint.is_file())  # stage 1 is past its first checkpoint (10 of 30)
    assert stopped.signalled
    assert stopped.terminated_cleanly, (stopped.returncode, stopped.stderr)
    [line] = [ln for ln in stopped.stdout.splitlines() if "stopped at iteration" in ln]
    done = int(line.split("stopped at iteration ")[1].split()[0])
    with safe_open(str(checkpoint), "pt") as f:
        assert int(f.metadata()["iteration"]) == done >= 10
    assert run_cli(recipe) is False
    assert same_stages(reference, tmp_path / "terminated") == []
