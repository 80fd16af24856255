"""Vectorised evaluation runs (torch.func.vmap over stacked parameters) train each network as its own sequential
run would: same initialisation, shuffles, augmentation draws and SGD state."""

from __future__ import annotations

import copy

import pytest
import torch

from hf_condense.data.augment import DSA
from hf_condense.models import ModelConfig, build_model
from hf_condense.models.functional import buffer_free
from hf_condense.models.stacked import StackedNets
from hf_condense.models.training import NetGroup, TrainSchedule


@pytest.mark.parametrize("augment", [False, True])
def test_stacked_networks_follow_their_sequential_runs(digits, augment):
    x = digits.train_x[:300].float() / 255
    y = digits.train_y[:300]
    cfg = TrainSchedule(batch_size=64)
    models = []
    for seed in (1, 2, 3):
        torch.manual_seed(seed)
        models.append(build_model(ModelConfig(name="convnet_d2w16"), 10, 1, 8))
    assert buffer_free(models[0])
    dsa = DSA("color_crop_cutout_scale_rotate") if augment else None
    sequential = NetGroup([copy.deepcopy(m) for m in models], cfg, 0.05)
    stacked = StackedNets([copy.deepcopy(m) for m in models], cfg, 0.05)
    sequential.fit(x, y, 4, 0.05, cfg, dsa, [torch.Generator().manual_seed(s) for s in (1, 2, 3)], "cpu")
    stacked.fit(x, y, 4, 0.05, cfg, dsa, [torch.Generator().manual_seed(s) for s in (1, 2, 3)], "cpu")
    for i, model in enumerate(sequential.models):
        moved = model.state_dict()
        for name, value in stacked.unstack(i).items():
            assert torch.allclose(value, moved[name], rtol=1e-3, atol=1e-3), name  # float rounding, grows over epochs
            assert not torch.equal(value, models[i].state_dict()[name]) or value.ndim == 0  # it trained
    tx, ty = digits.test_x.float() / 255, digits.test_y
    assert stacked.accuracy(tx, ty, "cpu", 128) == pytest.approx(sequential.accuracy(tx, ty, "cpu", 128), abs=0.01)


@pytest.mark.parametrize("mode", ["progressive", "union"])
def test_vectorised_evaluation_scores_like_sequential_runs(digits, mode):
    from hf_condense.models.runs import ProtocolRuns, StageData, evaluate_runs

    x, y = digits.train_x.float() / 255, digits.train_y
    stages = [StageData(x[i * 50 : (i + 1) * 50], y[i * 50 : (i + 1) * 50], 0.05, 6) for i in range(2)]
    tx, ty = digits.test_x.float() / 255, digits.test_y
    dsa = DSA("color_crop_cutout_scale_rotate")

    def model():
        return build_model(ModelConfig(name="convnet_d2w16"), 10, 1, 8)

    def runs(v):
        return ProtocolRuns(model, TrainSchedule(), dsa, mode, [5, 6], "cpu", 10, vectorize=v)

    scores = {v: evaluate_runs(stages, runs(v), tx, ty) for v in (False, True)}
    assert torch.tensor(scores[True]).shape == (2, 2)
    assert torch.allclose(torch.tensor(scores[True]), torch.tensor(scores[False]), atol=0.01)


@pytest.mark.heavy
@pytest.mark.parametrize("transition", [False, True])
def test_stacked_experts_follow_their_sequential_trajectories(tiny, accelerator, tmp_path, transition):
    """`method.expert_stack` trains a process's experts as one vmapped network: the same trajectories (PDD transition
    pre-training included) as one by one, up to float rounding."""
    import hf_condense
    from hf_condense.cli.distill import prepare
    from hf_condense.methods.base import SynSet
    from hf_condense.methods.experts import ExpertStore
    from hf_condense.methods.mtt import expert_settings

    from ..conftest import tiny_mtt

    trajectories = {}
    for stack in (1, 3):
        tiny["method"] = tiny_mtt(num_experts=3, expert_stack=stack)
        tiny["output"] = {"dir": str(tmp_path / f"out{stack}"), "cache_dir": str(tmp_path / f"cache{stack}")}
        recipe = hf_condense.load_recipe(tiny)
        ctx = prepare(recipe, accelerator)
        store = ExpertStore(ctx)
        earlier = [SynSet(ctx.train_x[:20].clone(), ctx.train_y[:20].clone(), lr=0.02)] if transition else []
        settings = expert_settings(recipe.method, recipe.seed)
        key, paths = store.stage_experts(settings, earlier, 3, recipe.evaluation.schedule())
        trajectories[stack] = torch.stack([store.trajectory(p, key, 3) for p in paths])
    one, stacked = trajectories[1], trajectories[3]
    assert one.shape == stacked.shape and one.shape[0] == 3
    assert not torch.equal(one[:, 0], one[:, -1])  # the experts trained
    assert torch.allclose(one, stacked, rtol=1e-4, atol=1e-4)  # float rounding only
