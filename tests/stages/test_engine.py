"""The stage engine: conditioning, transitions, boosting, and the evaluation modes."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import hf_condense
from hf_condense.core.config import RecipeError
from hf_condense.stages.recipe import load_recipe
from hf_condense.stages.run_folder import list_stages, read_stage

from ..conftest import tiny_mtt


def staged(tiny, tmp_path, name, **stages):
    tiny["method"] = tiny_mtt(iterations=8)
    tiny["stages"] = {"count": 2, "ipc": 1, **stages}
    tiny["evaluation"].update({"runs": 1, "epochs": 20})
    tiny["output"]["dir"] = str(tmp_path / name)
    return load_recipe(tiny)


@pytest.mark.heavy
def test_earlier_stages_stay_bit_identical(tiny, accelerator, tmp_path):
    one = hf_condense.run(staged(tiny, tmp_path, "one", count=1), accelerator)
    two = hf_condense.run(staged(tiny, tmp_path, "two"), accelerator)
    assert torch.equal(one.stages[0].images, two.stages[0].images)
    assert torch.equal(read_stage(tmp_path / "two" / "stage_1").images, one.stages[0].images)
    assert not torch.equal(two.stages[1].images, two.stages[0].images)


@pytest.mark.heavy
def test_transition_experts_start_from_weights_trained_on_earlier_stages(tiny, accelerator, tmp_path):
    from hf_condense.cli.distill import prepare
    from hf_condense.methods.experts import ExpertStore
    from hf_condense.methods.mtt import expert_settings
    from hf_condense.models.functional import FlatParams

    recipe = staged(tiny, tmp_path, "t")
    result = hf_condense.run(recipe, accelerator)
    ctx = prepare(recipe, accelerator)
    store = ExpertStore(ctx)
    s = expert_settings(recipe.method, recipe.seed)
    base_key, base = store.stage_experts(s, [], 20, recipe.evaluation.schedule())
    key, moved = store.stage_experts(s, result.stages[:1], 150, recipe.evaluation.schedule())
    assert key != base_key
    net = FlatParams(ctx.make_model())
    s1 = result.stages[0]

    def fit_on_s1(theta):
        return float((net(theta, s1.images).argmax(1) == s1.labels).float().mean())

    base_start = store.trajectory(base[0], base_key, 0)[0]
    moved_start = store.trajectory(moved[0], key, 0)[0]
    assert fit_on_s1(moved_start) >= 0.8 and fit_on_s1(base_start) < 0.5
    # a read-only store (inspecting a finished run) serves the cached chain and never trains a missing one
    reader = ExpertStore(ctx, train=False)
    assert reader.stage_experts(s, result.stages[:1], 150, recipe.evaluation.schedule()) == (key, moved)
    with pytest.raises(FileNotFoundError, match="not cached"):
        reader.stage_experts(s, result.stages[:1], 149, recipe.evaluation.schedule())
    # without transition the second stage matches the base experts
    recipe_nt = staged(tiny, tmp_path, "nt", transition=False)
    assert store.stage_experts(s, [], 20, recipe_nt.evaluation.schedule())[0] == base_key


@pytest.mark.heavy
def test_a_finished_run_extends_with_more_stages_without_redoing_them(tiny, accelerator, tmp_path, monkeypatch):
    """PDD's scaling up: raising stages.count distils only the new stages, equal to a run made that long from the
    start; a recipe that changes an earlier stage, or asks for fewer stages, is refused."""
    from hf_condense.methods import mtt

    whole = hf_condense.run(staged(tiny, tmp_path, "whole", count=3), accelerator)
    hf_condense.run(staged(tiny, tmp_path, "grown", count=2), accelerator)
    calls = []
    original = mtt.MTTDistiller.distill
    monkeypatch.setattr(mtt.MTTDistiller, "distill", lambda self, t: (calls.append(t.stage), original(self, t))[1])
    grown = hf_condense.run(staged(tiny, tmp_path, "grown", count=3), accelerator)
    assert calls == [3]
    assert all(torch.equal(a.images, b.images) for a, b in zip(whole.stages, grown.stages, strict=True))
    more_runs = staged(tiny, tmp_path, "grown", count=3)
    more_runs = dataclasses.replace(more_runs, evaluation=dataclasses.replace(more_runs.evaluation, runs=2))
    hf_condense.run(more_runs, accelerator)  # evaluation-only settings keep the stages
    assert calls == [3]
    with pytest.raises(RecipeError, match="holds 3 stages but stages.count is 2"):
        hf_condense.run(staged(tiny, tmp_path, "grown", count=2), accelerator)
    with pytest.raises(RecipeError, match="different recipe \\(stage 2: hash"):
        hf_condense.run(staged(tiny, tmp_path, "grown", count=3, ipc=[1, 2, 1]), accelerator)
    assert calls == [3] and list_stages(tmp_path / "grown") == [1, 2, 3]


@pytest.mark.heavy
@pytest.mark.parametrize("beta", [0.0, 0.5])
def test_boost_moves_earlier_blocks_only_with_beta(tiny, accelerator, tmp_path, beta):
    one = hf_condense.run(staged(tiny, tmp_path, "one", count=1), accelerator)
    boosted = hf_condense.run(staged(tiny, tmp_path, f"b{beta}", scheme="boost", boost_beta=beta), accelerator)
    same = torch.equal(one.stages[0].images, boosted.stages[0].images)
    assert same == (beta == 0.0)
    on_disk = read_stage(tmp_path / f"b{beta}" / "stage_1").images
    assert torch.equal(on_disk, boosted.stages[0].images)  # the rewritten block is what was saved


@pytest.mark.parametrize("mode,expected", [("progressive", [10, 30]), ("union", [10, 30]), ("sequential", [10, 20])])
def test_evaluation_modes_train_on_the_sets_they_claim(tiny, accelerator, monkeypatch, mode, expected):
    from hf_condense.models import training

    sizes, models = [], []
    original_fit, original_sgd = training.fit, training.make_optimizer
    monkeypatch.setattr(
        training, "fit", lambda m, o, x, *a, **k: (sizes.append(len(x)), original_fit(m, o, x, *a, **k))[1]
    )
    monkeypatch.setattr(training, "make_optimizer", lambda m, *a: (models.append(id(m)), original_sgd(m, *a))[1])
    tiny["stages"] = {"count": 2, "ipc": [1, 2]}
    tiny["evaluation"].update({"runs": 1, "epochs": 2, "mode": mode})
    hf_condense.run(load_recipe(tiny), accelerator)
    assert sizes == expected
    assert len(models) == (2 if mode == "union" else 1)  # union: a fresh network per budget


@pytest.mark.heavy
def test_forgetting_curriculum_restricts_each_stage_to_its_band(tiny, accelerator, tmp_path):
    import json

    from safetensors.torch import load_file

    tiny["method"] = {"name": "random"}
    tiny["stages"] = {"count": 2, "ipc": 1, "curriculum": "forgetting", "forgetting_band": 1.0, "forgetting_epochs": 4}
    result = hf_condense.run(load_recipe(tiny), accelerator)
    scores = load_file(str(tmp_path / "out" / "forgetting.safetensors"))["scores"]
    assert len(scores) == 1437  # one per digits train example
    for k, stage in enumerate(result.stages, start=1):
        meta = json.loads((tmp_path / "out" / f"stage_{k}" / "stage.json").read_text())
        assert 0 < meta["curriculum"]["init_fraction"] < 1 and meta["real_fraction"] == 1.0
        chosen = scores[stage.indices]
        in_band = (chosen >= k - 1) & ((chosen < k) | (k == 2))  # the last band is open-ended
        assert in_band.float().mean() >= 0.5  # all in band, except classes whose band was too small


def test_band_pools_fill_small_bands_with_nearest_scores():
    from hf_condense.stages.curriculum import band_pools

    scores = torch.tensor([0.0, 0.0, 1.0, 5.0, 7.0, float("inf")])
    idx = [torch.arange(6)]
    assert band_pools(scores, idx, 1, 3.0, 2)[0].tolist() == [0, 1, 2]
    assert band_pools(scores, idx, 2, 3.0, 1)[0].tolist() == [3]
    assert band_pools(scores, idx, 3, 3.0, 1)[0].tolist() == [4]
    assert sorted(band_pools(scores, idx, 2, 3.0, 2)[0].tolist()) == [3, 4]  # 7 is nearer to [3, 6) than 1
    assert band_pools(scores, idx, 2, 3.0, 1, last=True)[0].tolist() == [3, 4, 5]  # the last band: [3, inf]


def test_quantile_pools_partition_each_class_by_rank():
    from hf_condense.stages.curriculum import quantile_pools

    scores = torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 0.0, 5.0, float("inf"), 0.0])
    idx = [torch.arange(6), torch.arange(6, 10)]
    slices = [quantile_pools(scores, idx, k, 3, 1, seed=0) for k in (1, 2, 3)]
    assert [len(s[0]) for s in slices] == [2, 2, 2] and [len(s[1]) for s in slices] == [1, 1, 2]
    for c in range(2):  # disjoint, covering the class, and ordered: no example of slice k scores above slice k+1
        assert sorted(torch.cat([s[c] for s in slices]).tolist()) == idx[c].tolist()
        for a, b in zip(slices, slices[1:]):
            assert scores[a[c]].max() <= scores[b[c]].min()
    assert slices[2][0].tolist() == [4, 5] and slices[2][1].tolist() == [7, 8]  # the most forgotten last
    widened = quantile_pools(scores, idx, 3, 3, 3, seed=0)[1].tolist()  # widened to `need` examples
    assert len(widened) == 3 and widened[1:] == [7, 8]


@pytest.mark.heavy
def test_quantile_curriculum_gives_each_stage_an_equal_share(tiny, accelerator, tmp_path):
    import json

    tiny["method"] = {"name": "random"}
    tiny["stages"] = {"count": 2, "ipc": 1, "curriculum": "forgetting_quantile", "forgetting_epochs": 4}
    result = hf_condense.run(load_recipe(tiny), accelerator)
    for k in (1, 2):
        meta = json.loads((tmp_path / "out" / f"stage_{k}" / "stage.json").read_text())
        assert abs(meta["curriculum"]["init_fraction"] - 0.5) < 0.01
    assert not set(result.stages[0].indices.tolist()) & set(result.stages[1].indices.tolist())


@pytest.mark.heavy
def test_progressive_students_draw_classes_times_the_stage_ipc_from_the_union(
    tiny, accelerator, tmp_path, monkeypatch
):
    """PDD's and SeqMatch's batching: stage 2's student steps take classes x IPC images drawn from stage 1 and 2
    together (not the whole union every step), recorded in the stage; a recipe's batch_syn wins."""
    from hf_condense.methods import mtt

    drawn = []
    original = mtt.minibatches
    monkeypatch.setattr(mtt, "minibatches", lambda n, size, *a: (drawn.append((n, size)), original(n, size, *a))[1])
    result = hf_condense.run(staged(tiny, tmp_path, "p"), accelerator)
    logs = [s.meta["log"] for s in result.stages]
    assert [(log["batch_syn"], log["student_set"]) for log in logs] == [(10, 10), (10, 20)]
    assert set(drawn) == {(10, 10), (20, 10)}
    monkeypatch.setattr(mtt, "minibatches", original)
    g = torch.Generator().manual_seed(0)
    steps = torch.cat(original(20, 10, 6, g))
    assert (steps < 10).any() and (steps >= 10).any()  # stage 1's images (first in the union) are drawn too
    recipe = staged(tiny, tmp_path, "q")
    recipe = dataclasses.replace(recipe, method=dataclasses.replace(recipe.method, batch_syn=4))
    assert hf_condense.run(recipe, accelerator).stages[1].meta["log"]["batch_syn"] == 4


def test_a_folder_from_before_a_method_revision_is_refused_with_what_changed(tiny, accelerator, tmp_path, monkeypatch):
    from hf_condense.methods import METHODS

    current = METHODS["mtt"]
    monkeypatch.setitem(METHODS, "mtt", dataclasses.replace(current, revisions=()))
    hf_condense.run(staged(tiny, tmp_path, "old", count=1), accelerator)
    monkeypatch.setitem(METHODS, "mtt", current)
    with pytest.raises(RecipeError, match="made by an earlier hf_condense .* stage 1 would change \\(start epochs"):
        hf_condense.run(staged(tiny, tmp_path, "old", count=1), accelerator)


@pytest.mark.heavy
def test_seqmatch_subsets_start_within_their_own_intervals(tiny, accelerator, tmp_path, monkeypatch):
    """SeqMatch as its code runs it: each subset's start epochs come from its own [min_start_epoch, max_start_epoch)
    (the interval's start to its end minus the matched epochs), and its student batch is classes x its IPC drawn
    from the union."""
    from hf_condense.methods import mtt

    starts = []
    original = mtt.start_epoch

    def spy(cfg, g, upper=None):
        starts.append((cfg.min_start_epoch, original(cfg, g, upper)))
        return starts[-1][1]

    monkeypatch.setattr(mtt, "start_epoch", spy)
    overrides = [{"min_start_epoch": 0, "max_start_epoch": 3}, {"min_start_epoch": 2, "max_start_epoch": 3}]
    result = hf_condense.run(staged(tiny, tmp_path, "s", scheme="seqmatch", overrides=overrides), accelerator)
    first, second = [t for lo, t in starts if lo == 0], [t for lo, t in starts if lo == 2]
    assert set(first) == {0, 1, 2} and set(second) == {2}
    assert [s.meta["log"]["batch_syn"] for s in result.stages] == [10, 10]


@pytest.mark.heavy
def test_a_folder_made_with_the_earlier_spelling_resumes_under_compute(tiny, accelerator, tmp_path, capsys):
    """A run folder whose recipe spelled its execution settings the earlier way (method.micro_batch, top-level
    threads) is the same run to the compute: spelling: the rerun finds its stages done and extends it."""
    tiny["method"] = {**tiny_mtt(iterations=4), "micro_batch": 8}
    tiny["threads"] = 1
    tiny["stages"] = {"count": 1, "ipc": 1}
    tiny["evaluation"] = {"runs": 1, "epochs": 2, "random_real": False}
    first = hf_condense.run(load_recipe(tiny), accelerator)
    stage_1 = (tmp_path / "out" / "stage_1" / "stage.json").stat().st_mtime_ns
    method = {k: v for k, v in tiny["method"].items() if k != "micro_batch"}
    now = {**{k: v for k, v in tiny.items() if k != "threads"}, "method": method}
    now["compute"] = {"micro_batch": 8, "threads": 1}
    capsys.readouterr()
    again = hf_condense.run(load_recipe(now, ["stages.count=2"]), accelerator)
    assert "resuming: 1 of 2 stage(s) already" in capsys.readouterr().out
    assert (tmp_path / "out" / "stage_1" / "stage.json").stat().st_mtime_ns == stage_1  # kept, not redone
    assert torch.equal(first.stages[0].images, again.stages[0].images) and len(again.stages) == 2


@pytest.mark.heavy
def test_a_twin_that_changes_only_the_transition_continues_a_finished_stage_1(tiny, accelerator, tmp_path, capsys):
    """A finished stage 1 is the start of any recipe that differs from its own only in transition settings: kept, not
    redone, and stage 2 is distilled under the twin's transition. A folder whose stage 1 was hashed with them (before
    the first stage read them at their defaults) is extended by its own recipe."""
    import json
    import shutil

    from hf_condense.stages.run_folder import STAGE_META, RunFolder

    tiny["method"] = {**tiny_mtt(iterations=4), "transition_experts": 2}
    tiny["stages"] = {"count": 1, "ipc": 1}
    tiny["evaluation"] = {"runs": 1, "epochs": 2, "random_real": False}
    first = load_recipe(tiny)
    hf_condense.run(first, accelerator)
    shutil.copytree(tmp_path / "out", tmp_path / "legacy")
    capsys.readouterr()
    twin = hf_condense.run(load_recipe(tiny, ["stages.count=2", "method.transition_experts=1"]), accelerator)
    assert "resuming: 1 of 2 stage(s) already" in capsys.readouterr().out and len(twin.stages) == 2
    with pytest.raises(RecipeError, match="different recipe \\(stage 2: hash"):  # stage 2 is the twin's own
        hf_condense.run(load_recipe(tiny, ["stages.count=2"]), accelerator)

    folder = RunFolder(tmp_path / "legacy")
    before = first.distill_hash(1, first_alone=False)
    folder.run_json.write_text(json.dumps({**folder.run_info(), "stage_hashes": [before]}))
    meta = folder.stage_dir(1) / STAGE_META
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "recipe_hash": before}))
    stamp = meta.stat().st_mtime_ns
    grown = hf_condense.run(load_recipe(tiny, ["stages.count=2", "output.dir=" + str(folder.path)]), accelerator)
    assert "resuming: 1 of 2 stage(s) already" in capsys.readouterr().out
    assert meta.stat().st_mtime_ns == stamp and torch.equal(grown.stages[0].images, twin.stages[0].images)
