"""Two real CPU processes (torchrun, gloo) against one: experts, evaluation networks and the distillation work
(MTT trajectories, DSA classes) are split between them with the image gradients summed, only the main process
writes, and the result equals the one-process run's within float tolerance.

Fresh interpreters rather than accelerate's fork-based debug launcher: a child forked from a parent whose OpenMP
pool is already running can hang in its first parallel kernel."""

from __future__ import annotations

import json

import pytest

from ..faults import RECIPE, run_cli, same_stages, write_recipe

DSA = {"name": "dsa", "iterations": 4, "batch_real": 16, "outer_loop": 2, "inner_loop": 2, "transition_nets": 2}


@pytest.mark.heavy
@pytest.mark.parametrize(
    "method", [{**RECIPE["method"], "trajectories": 2}, DSA], ids=["mtt-2-trajectories", "dsa-classes"]
)
def test_two_processes_give_the_one_process_result(tmp_path, method):
    for name, processes in (("one", 1), ("two", 2)):
        run_cli(write_recipe(tmp_path, name, eval_runs=2, method=method), processes=processes, timeout=300)
    assert same_stages(tmp_path / "one", tmp_path / "two", atol=1e-5) == []
    if method["name"] == "mtt":
        experts = sorted(p.name for p in (tmp_path / "two_cache").glob("experts/*/expert_*.safetensors"))
        assert len(experts) == 2 * 2  # base experts and stage 2's transition experts, each trained once
    one, two = (json.loads((tmp_path / n / "results.json").read_text()) for n in ("one", "two"))
    assert (one["processes"], two["processes"]) == (1, 2)
    assert len(two["distilled"]) == 2
    for a, b in zip(one["distilled"], two["distilled"]):
        assert a == pytest.approx(b, abs=1e-6)
