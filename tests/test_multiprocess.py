"""Two real CPU processes (torchrun, gloo): experts and evaluation networks are split between them, only the main
process writes, and the result equals a one-process run's.

Fresh interpreters rather than accelerate's fork-based debug launcher: a child forked from a parent whose OpenMP
pool is already running can hang in its first parallel kernel."""

from __future__ import annotations

import json

from .faults import run_cli, same_stages, write_recipe


def test_two_processes_give_the_one_process_result(tmp_path):
    for name, processes in (("one", 1), ("two", 2)):
        run_cli(write_recipe(tmp_path, name, eval_runs=2), processes=processes, timeout=300)
    assert same_stages(tmp_path / "one", tmp_path / "two") == []
    experts = sorted(p.name for p in (tmp_path / "two_cache").glob("experts/*/expert_*.safetensors"))
    assert len(experts) == 2 * 2  # base experts and stage 2's transition experts, each trained once
    one, two = (json.loads((tmp_path / n / "results.json").read_text()) for n in ("one", "two"))
    assert (one["processes"], two["processes"]) == (1, 2)
    assert one["distilled"] == two["distilled"] and len(two["distilled"]) == 2
