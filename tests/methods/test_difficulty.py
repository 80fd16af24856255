"""PAD's data selection: EL2N scores computed here, the easy-to-hard schedule, and experts trained on it."""

from __future__ import annotations

import pytest
import torch

from hf_condense.methods.difficulty import Curriculum, el2n_scores, ranked_by
from hf_condense.stages.recipe import RecipeError, load_recipe

from ..conftest import tiny_mtt

PAD_README = Curriculum(0.75, 20, ((40, 0.1), (60, 0.2)))  # PAD's CIFAR-10 run: IR 0.75, AEE 20, rm 40/60, 0.1/0.2


@pytest.mark.parametrize(
    "epoch,kept",
    [(0, (0, 75)), (10, (0, 87)), (20, (0, 100)), (30, (0, 100)), (40, (0, 100)), (41, (10, 100)), (61, (20, 100))],
)
def test_the_schedule_adds_hard_examples_then_drops_easy_ones(epoch, kept):
    s = PAD_README.kept(epoch, 100)
    assert (s.start, s.stop) == kept


def test_examples_rank_easiest_first_within_each_class():
    labels = torch.tensor([0, 1, 0, 1, 0])
    scores = torch.tensor([0.9, 0.2, 0.1, 0.5, 0.4])
    assert [r.tolist() for r in ranked_by(scores, labels)] == [[2, 4, 0], [1, 3]]
    assert [r.tolist() for r in ranked_by(scores, labels, torch.tensor([0, 1, 4]))] == [[4, 0], [1]]
    assert PAD_README.subset(ranked_by(scores, labels), 0).tolist() == [2, 4, 1]  # int(0.75 x 3), int(0.75 x 2)


def context(tiny, accelerator, *overrides):
    from hf_condense.cli.distill import prepare

    tiny["method"] = tiny_mtt()
    return prepare(load_recipe(tiny, list(overrides)), accelerator)


@pytest.mark.heavy
def test_el2n_ranks_mislabelled_examples_hardest(tiny, accelerator):
    """Examples whose label was flipped score far above the others (the networks cannot fit them in a few epochs);
    the scores are cached and read back."""
    ctx = context(tiny, accelerator)
    flipped = torch.arange(0, len(ctx.train_y), 10)
    ctx.train_y[flipped] = (ctx.train_y[flipped] + 1) % ctx.num_classes
    scores = el2n_scores(ctx, 2, 15, seed=0)
    others = torch.ones(len(scores), dtype=torch.bool)
    others[flipped] = False
    assert scores[flipped].mean() > scores[others].mean() + 0.2
    assert torch.equal(el2n_scores(ctx, 2, 15, seed=0), scores) and len(list(ctx.cache_dir.glob("el2n/*"))) == 1


@pytest.mark.heavy
def test_curriculum_experts_train_each_epoch_on_its_share(tiny, accelerator, monkeypatch):
    """expert_curriculum el2n: epoch e of an expert sees the schedule's share of every class (and the experts get a
    key of their own)."""
    from hf_condense.methods.experts import ExpertStore
    from hf_condense.methods.mtt import expert_settings
    from hf_condense.models.training import NetGroup

    change = ["method.expert_curriculum=el2n", "method.el2n_networks=1", "method.el2n_epochs=1"]
    change += ["method.curriculum_initial=0.5", "method.curriculum_add_end=1", "method.curriculum_remove_epochs=[1]"]
    change += ["method.curriculum_remove_fractions=[0.25]", "method.num_experts=1", "method.max_start_epoch=2"]
    ctx = context(tiny, accelerator, *change)
    seen = []
    original = NetGroup.train_epoch
    monkeypatch.setattr(
        NetGroup, "train_epoch", lambda self, x, y, *a, **k: (seen.append(len(y)), original(self, x, y, *a, **k))[1]
    )
    recipe = load_recipe(tiny, change)
    s = expert_settings(recipe.method, 0)
    key, _ = ExpertStore(ctx).base_experts(s)
    counts = torch.bincount(ctx.train_y)
    share = [sum(int(f * n) for n in counts.tolist()) for f in (0.5, 1.0)]
    assert seen == [share[0], share[1], len(ctx.train_y) - sum(int(0.25 * n) for n in counts.tolist())]
    assert key != ExpertStore(ctx).base_key(expert_settings(load_recipe(tiny).method, 0))


def test_a_curriculum_longer_than_the_experts_training_is_refused(tiny):
    tiny["method"] = {**tiny_mtt(), "expert_curriculum": "el2n"}  # experts: 3 epochs; the schedule runs to 60
    with pytest.raises(RecipeError) as e:
        load_recipe(tiny)
    assert e.value.errors[0].startswith(
        "method.expert_curriculum: the schedule runs to epoch 60, beyond the experts' 3"
    )
