"""Every registered method, present and future, gets the same tests from the registry: a refused bad config, a
kill-and-resume that reproduces the uninterrupted stages, and (synthetic methods) a tiny run that beats random real
images. A toy method registered in a few lines shows that a new method is one module, one registry line, a recipe."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from safetensors import safe_open

import hf_condense
from hf_condense.core.config import RecipeError, opt
from hf_condense.methods import METHODS, Capabilities, MethodConfig, MethodSpec, StageOutput, StageTask
from hf_condense.methods.loop import DistillLoop, loss_log
from hf_condense.methods.workspace import Workspace
from hf_condense.stages.run_folder import RunFolder

from ..conftest import tiny_mtt
from .test_methods import FAST, IDC, RAT

# Tiny settings of every registered method: a method without an entry here fails `test_every_method_has_tiny_settings`.
TINY_METHODS = {
    "random": {},
    "herding": {"embed_epochs": 1},
    "kcenter": {"embed_epochs": 1},
    "forgetting": {"score_epochs": 2},
    "dc": FAST["dc"],
    "dsa": FAST["dsa"],
    "dm": FAST["dm"],
    "idc": IDC,
    "ratbptt": RAT,
    "mtt": tiny_mtt(iterations=60, num_experts=3, max_start_epoch=4),
    "datm": tiny_mtt(
        iterations=60,
        num_experts=3,
        max_start_epoch=4,
        expert_lr=0.05,
        batch_syn=None,
        initial_max_start_epoch=2,
        expansion_iterations=30,
    ),
}
MARGIN = {"ratbptt": 0.03}


def method_section(name: str, **extra) -> dict:
    return {**TINY_METHODS[name], **extra, "name": name}


def test_every_method_has_tiny_settings():
    assert sorted(TINY_METHODS) == sorted(METHODS)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_a_bad_method_config_is_refused_with_the_key(tiny, name):
    tiny["method"] = method_section(name, no_such_setting=1)
    with pytest.raises(RecipeError, match=r"method\.no_such_setting: unknown key"):
        hf_condense.load_recipe(tiny)


@pytest.mark.heavy
@pytest.mark.parametrize("name", sorted(n for n, s in METHODS.items() if s.capabilities.synthetic))
def test_a_tiny_run_beats_random_real_images(tiny, accelerator, name):
    tiny["method"] = method_section(name)
    tiny["stages"] = {"count": 1, "ipc": 1}
    tiny["evaluation"] = {"runs": 3, "epochs": 100, "random_real": True}
    result = hf_condense.run(hf_condense.load_recipe(tiny), accelerator)
    log = result.stages[0].meta["log"]
    assert log["loss_end"] < log["loss_start"]  # the method lowered its own objective
    (acc, _), (rand, _) = result.distilled[0], result.random_real[0]
    assert acc > rand + MARGIN.get(name, 0.05), (acc, rand)


def _with_checkpoints(name: str) -> dict:
    section = method_section(name)
    if "checkpoint_every" in METHODS[name].config_class.__dataclass_fields__:
        section["iterations"] = min(section.get("iterations", 10), 12)
        section["checkpoint_every"] = 4
    if "inner_loop" in section:
        section["inner_loop"] = 2
    return section


@pytest.mark.heavy
@pytest.mark.parametrize("name", sorted(METHODS))
def test_an_interrupted_run_resumes_to_the_uninterrupted_stages(tiny, accelerator, tmp_path, monkeypatch, name):
    """Interrupted once iteration 5 has updated everything (methods with a loop; checkpoints every 4 iterations) or
    right after its first stage (coresets), the same command resumes to the stages of a run that was never
    interrupted: the loop rewinds the half-done iteration and keeps the five before it."""
    tiny["method"] = _with_checkpoints(name)
    tiny["stages"] = {"count": 2, "ipc": 1}
    tiny["evaluation"] = {"runs": 1, "epochs": 2, "random_real": False}
    tiny["output"] = {"dir": str(tmp_path / "clean")}
    clean = hf_condense.run(hf_condense.load_recipe(tiny), accelerator)

    tiny["output"] = {"dir": str(tmp_path / "killed")}
    recipe = hf_condense.load_recipe(tiny)
    one, written = DistillLoop._one, RunFolder.write_stage

    def one_then_stop(self, step, it, *args):
        out = one(self, step, it, *args)
        if it == 5:
            raise KeyboardInterrupt
        return out

    def write_then_stop(self, k, *args):
        written(self, k, *args)
        raise KeyboardInterrupt

    monkeypatch.setattr(DistillLoop, "_one", one_then_stop)
    monkeypatch.setattr(RunFolder, "write_stage", write_then_stop)
    with pytest.raises(KeyboardInterrupt):
        hf_condense.run(recipe, accelerator)
    if "checkpoint_every" in METHODS[name].config_class.__dataclass_fields__:  # a loop: saved at iteration 5
        [checkpoint] = (tmp_path / "killed" / ".checkpoints" / "stage_1").glob("*.safetensors")
        with safe_open(str(checkpoint), "pt") as f:
            assert f.metadata()["iteration"] == "5"
    monkeypatch.setattr(DistillLoop, "_one", one)
    monkeypatch.setattr(RunFolder, "write_stage", written)
    resumed = hf_condense.run(recipe, accelerator)
    for a, b in zip(clean.stages, resumed.stages, strict=True):
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels) and a.lr == b.lr


# A toy method: each image moves towards the mean of its class's real pool. One config, one distiller, one spec.
@dataclass
class ToyConfig(MethodConfig):
    iterations: int = opt(20, min=1, help="Steps towards the class means.")
    lr_img: float = opt(0.2, gt=0, help="SGD lr of the images.")
    checkpoint_every: int = opt(5, min=1, help="Iterations between checkpoints.")


class ToyDistiller:
    def __init__(self, ctx):
        self.ctx = ctx

    def distill(self, task: StageTask) -> StageOutput:
        cfg, ctx = task.config, self.ctx
        g = torch.Generator().manual_seed(task.seed)
        ws = Workspace.build(ctx, task, "real", g)
        means = torch.stack([ctx.train_x[pool].mean(0) for pool in task.pool])[ws.labels]
        opt_img = torch.optim.SGD([ws.images], lr=cfg.lr_img)

        def step(it: int) -> float:
            loss = ((ws.images - means) ** 2).mean()
            loss.backward()
            return float(loss.detach())

        loop = DistillLoop(ctx, task, "toy", cfg.iterations, cfg.checkpoint_every, ws.tensors(), {"img": opt_img}, g)
        return ws.output(task, task.default_lr, loss_log(loop.run(step)))


@pytest.mark.heavy
def test_a_toy_method_is_one_config_one_distiller_one_registry_line(tiny, accelerator, monkeypatch):
    monkeypatch.setitem(METHODS, "toy", MethodSpec(ToyConfig, ToyDistiller, Capabilities()))
    tiny["method"] = {"name": "toy", "iterations": 30}
    recipe = hf_condense.load_recipe(tiny)
    assert isinstance(recipe.method, ToyConfig) and recipe.method.name == "toy"
    result = hf_condense.run(recipe, accelerator)
    log = result.stages[0].meta["log"]
    assert log["loss_end"] < log["loss_start"]
    assert [s.meta["method"] for s in result.stages] == ["toy", "toy"]
    loaded = hf_condense.load_progressive(result.folder).synsets()
    assert all(torch.equal(a.images, b.images) for a, b in zip(loaded, result.stages, strict=True))
    tiny["method"] = {"name": "toy", "lr_img": 0}
    with pytest.raises(RecipeError, match=r"method\.lr_img: 0(\.0)? is too small"):
        hf_condense.load_recipe(tiny)


def test_a_method_that_needs_experts_must_say_how_to_build_them():
    with pytest.raises(TypeError, match="prepare_experts"):
        MethodSpec(ToyConfig, ToyDistiller, Capabilities(needs_experts=True))
