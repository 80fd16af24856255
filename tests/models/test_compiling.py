"""torch.compile of training steps: the rule's choices, compiled = eager up to round-off, and eager after a failure."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import timm
import torch

import hf_condense  # noqa: F401  (registers the ConvNets)
from hf_condense.core.config import RecipeError
from hf_condense.models import compiling
from hf_condense.models.training import train_epoch
from hf_condense.stages.recipe import load_recipe

from ..conftest import no_cxx, tiny_mtt

CPU = torch.device("cpu")


def _train(compile: bool):
    torch.manual_seed(0)
    model = timm.create_model("test_convnet", num_classes=3, in_chans=1, img_size=8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(23, 1, 8, 8, generator=g), torch.arange(23) % 3
    values = train_epoch(model, opt, x, y, 10, None, g, CPU, compile=compile)
    return torch.cat([p.detach().flatten() for p in model.parameters()]), values


def test_the_rule_compiles_large_cpu_jobs_of_narrow_networks_and_a_recipe_value_wins(monkeypatch):
    monkeypatch.setattr(compiling, "_failed", [])
    big, small = compiling.COMPILE_MIN_EXAMPLES, compiling.COMPILE_MIN_EXAMPLES - 1
    x = torch.zeros(1, 3, 32, 32)
    narrow, wide = (timm.create_model(f"convnet_d3w{w}", num_classes=10, img_size=32) for w in (32, 128))
    assert compiling.should_compile(None, CPU, big, narrow, x)
    assert not compiling.should_compile(None, CPU, small, narrow, x)  # compiling would not pay for itself
    assert not compiling.should_compile(None, CPU, big, wide, x)  # convolutions dominate: measured no gain
    assert not compiling.should_compile(None, "cuda", big, narrow, x)  # GPUs: eager unless asked
    assert compiling.should_compile(True, CPU, 1, wide, x) and not compiling.should_compile(False, CPU, big, narrow, x)
    monkeypatch.setattr(compiling, "_failed", ["no compiler"])
    assert not compiling.should_compile(True, CPU, big, narrow, x)  # once it failed, never again in the process
    assert compiling.describe(None, True) == "compiled (auto)" and compiling.describe(False, False) == "eager (recipe)"


@pytest.mark.heavy
def test_compiled_training_steps_equal_eager_ones(fresh_compile):
    eager, v_eager = _train(False)
    fused, v_fused = _train(True)
    assert ((fused - eager).norm() / eager.norm()) < 1e-5
    assert abs(v_fused["loss"] - v_eager["loss"]) < 1e-5 and v_fused["accuracy"] == v_eager["accuracy"]


def test_a_failed_compile_trains_eagerly_after_one_warning(fresh_compile, caplog):
    eager, _ = _train(False)
    with no_cxx(), caplog.at_level(logging.WARNING, logger="hf_condense.compile"):
        fell_back, _ = _train(True)
        again, _ = _train(True)
    assert torch.equal(fell_back, eager) and torch.equal(again, eager)  # the batch is redone eagerly, from scratch
    warnings = [r.getMessage() for r in caplog.records if r.name == "hf_condense.compile"]
    assert len(warnings) == 1 and "training eagerly" in warnings[0] and "compiler" in warnings[0]


@pytest.mark.heavy
def test_expert_compile_is_recorded_and_leaves_stage_hashes(tiny, capsys):
    from hf_condense.cli.experts import build_experts

    tiny["method"] = tiny_mtt(num_experts=1, expert_compile=False)
    tiny["stages"] = {"count": 1, "ipc": 1}
    recipe = load_recipe(tiny)
    build_experts(recipe)
    assert "expert(s) x 3 epoch(s) into" in capsys.readouterr().out  # the start line says how they train ...
    tiny["method"] = tiny_mtt(num_experts=1)
    build_experts(load_recipe(tiny))  # (cached: nothing to train, nothing printed)
    tiny["output"]["cache_dir"] = str(Path(tiny["output"]["dir"]) / "other_cache")
    build_experts(load_recipe(tiny))
    assert "eager (auto)" in capsys.readouterr().out  # ... a tiny job stays eager under the rule
    tiny["evaluation"]["compile"] = True
    assert load_recipe(tiny).stage_hashes() == recipe.stage_hashes()  # how, not what, is computed
    tiny["method"] = tiny_mtt(expert_compile="maybe")
    with pytest.raises(RecipeError, match="compute.expert_compile"):
        load_recipe(tiny)
