"""Long runs are observable: every iteration's loss and the periodic tests reach any Accelerate tracker."""

from __future__ import annotations

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
