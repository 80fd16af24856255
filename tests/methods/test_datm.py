"""DATM (and PAD's parameter selection): each mechanism of the official code, on digits, and its bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator

import hf_condense
from hf_condense.methods.datm import DATMConfig, DATMDistiller
from hf_condense.methods.unroll import matching_loss, unroll_backward
from hf_condense.models.functional import FlatParams
from hf_condense.stages.recipe import RecipeError, load_recipe
from hf_condense.stages.run_folder import list_stages

from ..conftest import tiny_mtt
from .test_mtt import tiny_problem


def tiny_datm(**method) -> dict:
    """A tiny DATM run on digits: experts trained long enough (lr 0.05) to classify every class."""
    base = tiny_mtt(name="datm", max_start_epoch=3, expert_lr=0.05, batch_syn=None, iterations=6)
    return {**base, "initial_max_start_epoch": 1, "expansion_iterations": 4, **method}


def run(tiny, stages=None, out="out", **method):
    tiny["method"] = tiny_datm(**method)
    tiny["stages"] = stages or {"count": 1, "ipc": 2}
    tiny["evaluation"].update({"runs": 1, "epochs": 10, "random_real": False})
    tiny["output"]["dir"] = str(Path(tiny["output"]["dir"]).parent / out)
    return hf_condense.run(load_recipe(tiny))


def expert_logits(tiny, images: torch.Tensor) -> list[torch.Tensor]:
    """Each stage-1 expert's last-epoch logits on `images` (experts from the run's cache)."""
    from hf_condense.cli.distill import prepare
    from hf_condense.methods.experts import ExpertStore
    from hf_condense.methods.mtt import expert_settings

    recipe = load_recipe(tiny)
    ctx = prepare(recipe, Accelerator(cpu=True))
    store = ExpertStore(ctx, train=False)
    settings = expert_settings(recipe.method, recipe.seed)
    key, paths = store.stage_experts(settings, [], 1, recipe.evaluation.schedule())
    net = FlatParams(ctx.make_model())
    with torch.no_grad():
        return [net(store.trajectory(p, key, settings.epochs)[-1], images) for p in paths]


def test_sequential_generation_widens_the_start_range_from_the_initial_bound():
    """DATM's upper bound: initial + int((max - initial) x it / expansion), capped at max; off: max throughout."""
    d, cfg = DATMDistiller.__new__(DATMDistiller), DATMConfig(name="datm", max_start_epoch=20)
    assert [d.start_bound(cfg, it) for it in (0, 99, 100, 500, 999, 1000, 5000)] == [10, 10, 11, 15, 19, 20, 20]
    off = DATMConfig(name="datm", max_start_epoch=20, initial_max_start_epoch=None)
    assert d.start_bound(off, 0) == 20


def test_pad_matches_only_the_deeper_parameters():
    """match_from: both norms of the matching loss start at that flat index, and the unroll's gradient reaches the
    images only through the deeper parameters' distance."""
    net, start, target, images, alpha, batch, steps = tiny_problem()
    theta = start + torch.randn_like(start) * 0.01
    k = net.size // 2
    sliced = ((theta[k:] - target[k:]) ** 2).sum() / ((start[k:] - target[k:]) ** 2).sum()
    assert torch.allclose(matching_loss(theta, start, target, k), sliced)
    whole = unroll_backward(net, start, target, alpha, batch, steps)
    g_whole = images.grad.clone()
    images.grad = None
    deep = unroll_backward(net, start, target, alpha, batch, steps, offset=k)
    assert deep != whole and not torch.allclose(images.grad, g_whole)


def test_labels_learn_through_a_soft_unroll():
    """Class distributions as the student's labels: the unroll carries the matching loss's gradient into them."""
    net, start, target, images, alpha, batch, steps = tiny_problem()
    logits = torch.randn(len(images), 3, dtype=start.dtype, requires_grad=True)
    g = torch.Generator().manual_seed(0)
    idx = [torch.randperm(len(images), generator=g)[:4] for _ in range(steps)]
    unroll_backward(net, start, target, alpha, lambda j: (images[idx[j]], logits.softmax(1)[idx[j]]), steps)
    assert logits.grad is not None and logits.grad.abs().sum() > 0


@pytest.mark.heavy
def test_datm_starts_from_correctly_classified_images_with_the_experts_logits(tiny):
    """init correct: each image is one the experts' last epoch classifies as its class, and its label starts as the
    mean logits of the experts that get it right; init real: the first expert's logits. A threshold below every
    loss skips every update (no optimiser step), so the stored stage is its initialisation."""
    stage = run(tiny, threshold=1e-9, iterations=2).stages[0]
    log = json.loads((Path(tiny["output"]["dir"]) / "stage_1" / "stage.json").read_text())["log"]
    assert log["skipped_updates"] == 2
    outs = expert_logits(tiny, stage.images)
    right = torch.stack([o.argmax(1) == stage.labels for o in outs])
    assert right.any(0).all()  # every image: at least one expert classifies it correctly
    mean = sum(o * r[:, None] for o, r in zip(outs, right.float(), strict=True)) / right.sum(0)[:, None]
    assert torch.allclose(stage.soft_labels, mean.softmax(1), atol=1e-5)

    stage = run(tiny, out="real", threshold=1e-9, iterations=2, init="real").stages[0]
    first = expert_logits(tiny, stage.images)[0]
    assert torch.allclose(stage.soft_labels, first.softmax(1), atol=1e-5)
    assert not (first.argmax(1) == stage.labels).all()  # random real images: some the experts get wrong


@pytest.mark.heavy
def test_datm_learns_its_labels_only_when_asked(tiny):
    learned = run(tiny, out="learned").stages[0]
    fixed = run(tiny, out="fixed", learn_labels=False).stages[0]
    start = run(tiny, out="start", threshold=1e-9).stages[0]
    assert torch.equal(fixed.soft_labels, start.soft_labels)
    assert not torch.allclose(learned.soft_labels, start.soft_labels)
    assert torch.allclose(learned.soft_labels.sum(1), torch.ones(len(learned.images)))  # stored as distributions


@pytest.mark.heavy
def test_pdd_over_datm_freezes_the_earlier_labels_and_resumes_to_the_same_stages(tiny, monkeypatch):
    """Two stages: stage 1 stays as a one-stage run made it (images and soft labels); a run interrupted in stage 2
    resumes from its checkpoint (label logits and their optimiser included) to the uninterrupted stages."""
    stages, same = {"count": 2, "ipc": 2}, {"checkpoint_every": 2, "stage_ranges": "same"}  # stage 1: one range
    one = run(tiny, out="one", **same).stages[0]
    whole = run(tiny, stages=stages, out="whole", **same).stages
    assert torch.equal(whole[0].images, one.images) and torch.equal(whole[0].soft_labels, one.soft_labels)
    assert whole[1].soft_labels is not None

    original, calls = DATMDistiller.start_bound, []

    def killed(self, cfg, it):  # one call an iteration: stage 1's 6, then stage 2's iteration 3
        calls.append(it)
        if len(calls) == 6 + 4:
            raise KeyboardInterrupt("killed")
        return original(self, cfg, it)

    monkeypatch.setattr(DATMDistiller, "start_bound", killed)
    with pytest.raises(KeyboardInterrupt):
        run(tiny, stages=stages, out="resumed", **same)
    assert list_stages(Path(tiny["output"]["dir"])) == [1] and calls[-1] == 3
    monkeypatch.setattr(DATMDistiller, "start_bound", original)
    resumed = run(tiny, stages=stages, out="resumed", **same).stages
    for a, b in zip(whole, resumed, strict=True):
        assert torch.equal(a.images, b.images) and torch.equal(a.soft_labels, b.soft_labels)


@pytest.mark.parametrize(
    "change,message",
    [
        ({"match_from": 1.0}, "method.match_from: 1.0 leaves no parameter to match; expected a fraction in [0, 1)"),
        ({"initial_max_start_epoch": 4}, "method.initial_max_start_epoch: 4 is outside the experts' start range"),
        ({"compile_unroll": True}, "compute.compile_unroll: the compiled unroll does not carry gradients into labels"),
    ],
)
def test_datm_refuses_bad_settings_in_one_line(tiny, change, message):
    tiny["method"] = tiny_datm(**change)
    with pytest.raises(RecipeError) as e:
        load_recipe(tiny)
    assert any(line.startswith(message) for line in e.value.errors), e.value.errors


@pytest.mark.heavy
def test_too_few_correctly_classified_images_are_refused_with_the_count(tiny):
    """Experts too weak to classify every class (barely trained): the class and how many images were found."""
    with pytest.raises(RecipeError, match=r"method.init: 'correct' found \d+ of 60 images of class \d+ that the 2 "):
        run(tiny, stages={"count": 1, "ipc": 60}, expert_lr=1e-6)


def test_pdd_over_datm_gives_each_stage_its_slice_of_the_start_range(tiny):
    """stage_ranges split: stage i of P matches the i-th slice of [min, max), its sequential generation scaled into
    it and its experts trained the whole range's epochs; a stage whose overrides set the range, or `same`, keeps it.
    The stage count then shapes every stage, so its hash changes with it (a 2-stage run is not a 3-stage run's
    start)."""
    tiny["method"] = tiny_datm(min_start_epoch=0, max_start_epoch=20, initial_max_start_epoch=10)
    tiny["stages"] = {"count": 2, "ipc": 1}
    r = load_recipe(tiny)
    first, second = r.stage_method(1), r.stage_method(2)
    assert (first.min_start_epoch, first.initial_max_start_epoch, first.max_start_epoch) == (0, 5, 10)
    assert (second.min_start_epoch, second.initial_max_start_epoch, second.max_start_epoch) == (10, 15, 20)
    assert first.max_start_epoch + first.expert_extra_epochs == second.max_start_epoch + second.expert_extra_epochs
    assert r.stage_hashes()[0] != load_recipe(tiny, ["stages.count=3"]).stage_hashes()[0]
    same = load_recipe(tiny, ["method.stage_ranges=same"])
    assert same.stage_method(2).min_start_epoch == 0 and same.stage_method(2).max_start_epoch == 20
    own = load_recipe(
        tiny, ["stages.overrides=[{}, {min_start_epoch: 2, max_start_epoch: 6, initial_max_start_epoch: 4}]"]
    )
    assert own.stage_method(1).max_start_epoch == 10 and own.stage_method(2).max_start_epoch == 6
    tiny["stages"]["count"] = 1
    assert load_recipe(tiny).stage_method(1).max_start_epoch == 20


def test_a_start_range_too_narrow_for_its_stages_is_refused(tiny):
    tiny["method"] = tiny_datm(min_start_epoch=0, max_start_epoch=2, initial_max_start_epoch=None)
    tiny["stages"] = {"count": 3, "ipc": 1}
    with pytest.raises(RecipeError, match=r"method.min_start_epoch: 0 leaves no start epoch below max_start_epoch 0 "):
        load_recipe(tiny)


def test_learned_labels_are_refused_for_a_method_that_cannot_learn_them(tiny):
    tiny["method"] = {**tiny_mtt(), "learn_labels": True}
    with pytest.raises(RecipeError, match=r"method\.learn_labels: unknown key"):
        load_recipe(tiny)


@pytest.mark.heavy
def test_pdd_over_pad_runs_with_both_selections(tiny):
    """PDD over PAD: DATM with the experts' EL2N curriculum (base and transition experts) and the deeper half of the
    parameters matched, two stages, each with its slice of the start range and learned soft labels."""
    pad = {"expert_curriculum": "el2n", "el2n_networks": 1, "el2n_epochs": 1, "curriculum_add_end": 1}
    pad |= {"curriculum_remove_epochs": [2], "curriculum_remove_fractions": [0.1], "match_from": 0.5}
    result = run(tiny, stages={"count": 2, "ipc": 1}, **pad)
    assert [s.soft_labels is not None for s in result.stages] == [True, True]
    assert [s.meta["log"]["matched_from"] > 0 for s in result.stages] == [True, True]
