"""Two real CPU processes (accelerate's debug launcher, gloo): experts and evaluation networks are split between
them, only the main process writes, and the result equals a one-process run's."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from accelerate import Accelerator, debug_launcher

import hf_condense
from hf_condense.hub_layout import list_stages, read_stage

from .faults import RECIPE


def _run(out: str) -> None:
    recipe = copy.deepcopy(RECIPE)
    recipe["output"] = {"dir": out, "cache_dir": out + "_cache"}
    recipe["evaluation"]["runs"] = 2  # one network per process
    result = hf_condense.run(hf_condense.load_recipe(recipe), Accelerator(cpu=True))
    if result is not None and Accelerator().is_main_process:
        (Path(out) / "scores.json").write_text(json.dumps(result.distilled))


def test_two_processes_give_the_one_process_result(tmp_path):
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    debug_launcher(_run, args=(one,), num_processes=1)
    debug_launcher(_run, args=(two,), num_processes=2)
    assert list_stages(one) == list_stages(two) == [1, 2]
    for k in (1, 2):
        a, b = read_stage(tmp_path / "one" / f"stage_{k}"), read_stage(tmp_path / "two" / f"stage_{k}")
        assert torch.equal(a.images, b.images) and a.lr == b.lr
    experts = sorted(p.name for p in (tmp_path / "two_cache").glob("experts/*/expert_*.safetensors"))
    assert len(experts) == 2 * 2  # base experts and stage 2's transition experts, each trained once
    scores_one = json.loads((tmp_path / "one" / "scores.json").read_text())
    scores_two = json.loads((tmp_path / "two" / "scores.json").read_text())
    assert torch.allclose(torch.tensor(scores_one), torch.tensor(scores_two), atol=1e-6)
