"""Long runs are observable: every iteration's loss and the periodic tests reach any Accelerate tracker."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from accelerate import Accelerator
from accelerate.tracking import GeneralTracker

import hf_condense

from ..conftest import tiny_mtt


class MemoryTracker(GeneralTracker):
    """An Accelerate tracker that keeps what it is given."""

    name = "memory"
    requires_logging_directory = False

    def __init__(self):
        super().__init__()
        self.config, self.logged = None, []

    @property
    def tracker(self):
        return self.logged

    def store_init_configuration(self, values):
        self.config = values

    def log(self, values, step=None, **kwargs):
        self.logged.append((step, dict(values)))


@pytest.mark.heavy
def test_losses_and_periodic_tests_reach_the_trackers(tiny, capsys):
    tiny["method"] = tiny_mtt(iterations=10)
    tiny["stages"] = {"count": 2, "ipc": 1}
    tiny["evaluation"].update({"runs": 1, "epochs": 5, "every": 5, "every_epochs": 3, "random_real": True})
    tracker = MemoryTracker()
    accelerator = Accelerator(cpu=True, log_with=[tracker])
    accelerator.init_trackers("digits")
    hf_condense.run(hf_condense.load_recipe(tiny), accelerator)
    keys = [(step, k) for step, values in tracker.logged for k in values]
    for stage in (1, 2):
        assert [s for s, k in keys if k == f"stage_{stage}/loss"] == list(range(10))
        assert [s for s, k in keys if k == f"stage_{stage}/alpha"] == list(range(10))
        assert [s for s, k in keys if k == f"stage_{stage}/test_accuracy"] == [4, 9]
    tests = [v["stage_2/test_accuracy"] for _, v in tracker.logged if "stage_2/test_accuracy" in v]
    assert all(0 <= a <= 1 for a in tests)
    assert [s for s, k in keys if k == "test_accuracy"] == [1, 2]
    out, err = capsys.readouterr()
    assert "stage 2 iteration 10: test accuracy" in out
    phases = ["experts", "transition experts after stage 1", "stage 1 mtt", "stage 2 mtt"]
    phases += ["evaluation distilled convnet_d2w16", "evaluation random_real convnet_d2w16"]
    for phase in phases:  # a start line and an end line with its time, on the main process
        assert f"\n{phase}: " in f"\n{out}" and f"\n{phase}: done in " in f"\n{out}", phase
    assert "Creating parquet" not in err  # datasets' own bars stay quiet
    assert {k for _, k in keys} >= {"experts/loss", "experts/accuracy", "evaluation_distilled_convnet_d2w16/loss"}


def _tags(logdir) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set()
    for events in logdir.rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events))
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
    return tags


@pytest.mark.heavy
def test_tensorboard_on_a_fresh_folder_and_on_resume(tiny, tmp_path):
    pytest.importorskip("tensorboard")
    tiny["method"] = tiny_mtt(iterations=4)
    tiny["stages"] = {"count": 2, "ipc": 1}
    tiny["evaluation"].update({"runs": 1, "epochs": 3, "random_real": True})
    tiny["output"]["log_with"] = ["tensorboard"]
    from hf_condense.methods.context import make_accelerator

    def run():  # a fresh accelerator each time, as a new command would have
        from hf_condense.stages.run_folder import RunFolder

        acc = make_accelerator(log_with=["tensorboard"], project_dir=RunFolder(tmp_path / "out").logs)
        return hf_condense.run(hf_condense.load_recipe(tiny), acc)

    run()
    tags = _tags(tmp_path / "out" / "logs")
    want = {"stage_1/loss", "stage_2/alpha", "experts/loss", "experts/accuracy", "test_accuracy"}
    want |= {"evaluation/convnet_d2w16/test_accuracy", "evaluation/convnet_d2w16/ior"}
    want |= {"evaluation_distilled_convnet_d2w16/loss", "transition_experts_after_stage_1/loss"}
    assert want <= tags, want - tags
    tiny["stages"]["count"] = 3  # resume the same folder with one more stage
    run()
    assert "stage_3/loss" in _tags(tmp_path / "out" / "logs")


@pytest.mark.heavy
def test_wandb_offline_on_a_fresh_folder(tiny, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_DIR", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    tiny["method"] = tiny_mtt(iterations=3)
    tiny["stages"] = {"count": 1, "ipc": 1}
    tiny["evaluation"].update({"runs": 1, "epochs": 2})
    tiny["output"]["log_with"] = ["wandb"]
    hf_condense.run(hf_condense.load_recipe(tiny))
    runs = list((tmp_path / "out" / "logs").rglob("*.wandb"))  # under the run's logs, not the working folder
    assert runs and runs[0].stat().st_size > 0


@pytest.mark.heavy
def test_a_launched_runs_log_of_both_streams_reads_in_order(tiny, tmp_path):
    """`accelerate launch` relays its child's stderr through a pipe: every bar must still land between its phase's
    start and end lines in a log of stdout and stderr together."""
    tiny["evaluation"].update({"runs": 1, "epochs": 5, "random_real": True})
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(tiny))
    log = tmp_path / "run.log"
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1"]
    launch += ["--mixed_precision", "no", "--dynamo_backend", "no", "-m", "hf_condense.distill", str(recipe)]
    with log.open("w") as f:
        assert subprocess.run(launch, stdout=f, stderr=subprocess.STDOUT, timeout=300).returncode == 0
    lines = log.read_text().replace("\r", "\n").splitlines()
    for phase in ("evaluation distilled convnet_d2w16", "evaluation random_real convnet_d2w16"):
        start = lines.index(f"{phase}: 1 network(s) x 2 stage(s), 10 network-epoch(s), progressive")
        end = next(i for i, line in enumerate(lines) if line.startswith(f"{phase}: done in "))
        bars = [i for i, line in enumerate(lines) if line.startswith(f"{phase}: ") and "%|" in line]
        assert bars and all(start < i < end for i in bars), lines
        assert all(line.startswith(f"{phase}: ") or not line.strip() for line in lines[start : end + 1]), lines
