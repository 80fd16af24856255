"""The synthetic-image base methods beyond MTT (DC, DSA, DM) and the forgetting coreset, alone and inside PDD."""

from __future__ import annotations

import copy
import math

import pytest
import torch

import hf_condense
from hf_condense.core.config import RecipeError
from hf_condense.methods.coreset import most_forgotten
from hf_condense.methods.gradient_matching import default_loops, gradient_distance

FAST = {
    "dm": {"name": "dm", "iterations": 150},
    "dc": {"name": "dc", "iterations": 15},
    "dsa": {"name": "dsa", "iterations": 15},
}


def one_stage(tiny, method: dict, ipc: int = 1) -> dict:
    tiny["method"] = method
    tiny["stages"] = {"count": 1, "ipc": ipc}
    tiny["evaluation"] = {"runs": 3, "epochs": 100, "random_real": True}
    return tiny


RAT = {"name": "ratbptt", "iterations": 60, "window": 10, "horizon": 30, "batch_real": 500, "lr_img": 0.01}
# IDC at factor 1 (IDC-I): on 8 x 8 digits a factor-2 tile is 4 x 4 pixels, too coarse to carry a digit
IDC = {"name": "idc", "iterations": 15, "inner_loop": 10, "factor": 1, "lr_img": 0.05, "n_data": 256}


def test_gradient_distance_matches_a_hand_computed_value():
    real = [torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([5.0, -1.0])]
    syn = [torch.tensor([[2.0, 0.0], [1.0, 1.0]]), torch.tensor([1.0, 1.0])]
    # row 1: parallel (distance ~0); row 2: cos 45 deg; the bias (1-D) is ignored as in DC; eps 1e-6 as in DC
    expected = (1 - 2 / (1 * 2 + 1e-6)) + (1 - 1 / (1 * math.sqrt(2) + 1e-6))
    assert float(gradient_distance(real, syn)) == pytest.approx(expected, rel=1e-6)


def test_published_loops_by_ipc():
    assert default_loops(1) == (1, 1) and default_loops(10) == (10, 50) and default_loops(50) == (50, 10)
    assert default_loops(2) == (1, 1) and default_loops(12) == (10, 50)


@pytest.mark.heavy
def test_forgetting_coreset_keeps_the_most_forgotten_of_each_class(tiny, accelerator):
    tiny["method"] = {"name": "forgetting", "score_epochs": 3}
    tiny["stages"] = {"count": 2, "ipc": 2}
    result = hf_condense.run(hf_condense.load_recipe(tiny), accelerator)
    from hf_condense.data.sources import load_real_data
    from hf_condense.methods.forgetting import forgetting_scores
    from hf_condense.stages.engine import make_context

    recipe = hf_condense.load_recipe(tiny)
    ctx = make_context(recipe, accelerator, load_real_data(recipe.dataset))
    scores = forgetting_scores(ctx, 3, recipe.seed)  # cached by the run
    assert scores.numel() == len(ctx.train_y)
    chosen = torch.cat([s.indices for s in result.stages])
    assert len(set(chosen.tolist())) == len(chosen)  # stage 2 extends stage 1
    for c in range(10):
        mine = chosen[ctx.train_y[chosen] == c]
        rest = torch.tensor(
            [i for i in (ctx.train_y == c).nonzero().flatten().tolist() if i not in set(mine.tolist())]
        )
        assert scores[mine].min() >= scores[rest].max()


def test_most_forgotten_breaks_ties_at_random():
    scores = torch.tensor([0.0, 2.0, 2.0, 2.0, float("inf"), 1.0])
    picks = {tuple(most_forgotten(scores, 2, torch.Generator().manual_seed(s)).tolist()) for s in range(20)}
    assert all(p[0] == 4 and p[1] in (1, 2, 3) for p in picks) and len(picks) > 1


@pytest.mark.heavy
@pytest.mark.parametrize("name", ["dm", "dsa"])
def test_pdd_over_method_keeps_earlier_stages_and_uses_transitions(tiny, accelerator, name):
    tiny["method"] = {**FAST[name], "iterations": 5, "transition_nets": 2, "transition_epochs": 5}
    tiny["stages"] = {"count": 2, "ipc": 1, "scheme": "pdd"}
    result = hf_condense.run(hf_condense.load_recipe(tiny), accelerator)
    stage1 = hf_condense.stages.run_folder.read_stage(result.folder / "stage_1")
    assert torch.equal(stage1.images, result.stages[0].images)
    assert len(result.distilled) == 2


@pytest.mark.heavy
@pytest.mark.parametrize("mode", ["per_iteration", "pool"])
def test_gradient_matching_transitions_follow_the_reference_schedule(tiny, accelerator, monkeypatch, mode):
    """Reference PDD + IDC: every outer iteration's fresh network trains on S1, then S1 u S2, ... (epochs / 5 each)
    before matching; the pool option trains transition_nets networks once on all earlier stages."""
    from hf_condense.methods import sampled

    fits = []
    original = sampled.fit
    monkeypatch.setattr(
        sampled, "fit", lambda m, o, x, *a, **k: (fits.append((len(x), a[1])), original(m, o, x, *a, **k))[1]
    )
    tiny["method"] = {**FAST["dsa"], "iterations": 3, "transition_mode": mode, "transition_nets": 2}
    tiny["stages"] = {"count": 3, "ipc": 1, "scheme": "pdd"}
    tiny["evaluation"].update({"epochs": 20, "runs": 1})
    hf_condense.run(hf_condense.load_recipe(tiny), accelerator)
    if mode == "per_iteration":  # stage 2: 3 iterations x [S1]; stage 3: 3 x [S1, S1 u S2], at 20 / 5 epochs each
        assert fits == [(10, 4)] * 3 + [(10, 4), (20, 4)] * 3
    else:  # 2 networks on all earlier stages, once per stage, at evaluation.epochs
        assert fits == [(10, 20)] * 2 + [(20, 20)] * 2


@pytest.mark.parametrize(("beta", "moves"), [(0.1, True), (0.0, False)])
def test_boost_with_dm_moves_earlier_blocks_only_with_beta(tiny, accelerator, beta, moves):
    tiny["method"] = {**FAST["dm"], "iterations": 10}
    tiny["stages"] = {"count": 2, "ipc": 1, "scheme": "boost", "boost_beta": beta}
    tiny["evaluation"]["epochs"] = 5
    recipe = hf_condense.load_recipe(tiny)
    from hf_condense.cli.distill import prepare
    from hf_condense.stages.engine import StageEngine

    ctx = prepare(recipe, accelerator)
    first = {}

    def after(k, stages):
        if k == 1:
            first["images"] = stages[0].images.clone()
        else:
            first["moved"] = not torch.equal(first["images"], stages[0].images)

    StageEngine(ctx, recipe, on_stage=after).run()
    assert first["moved"] is moves


def test_ratbptt_truncated_gradient_equals_full_backward_through_the_window():
    from hf_condense.methods.ratbptt import adam_steps, truncated_unroll
    from hf_condense.models import ModelConfig, build_model
    from hf_condense.models.functional import FlatParams

    torch.manual_seed(0)
    net = FlatParams(build_model(ModelConfig(name="convnet_d1w16"), 3, 1, 8))
    p0 = net.flatten()
    images = torch.randn(6, 1, 8, 8, requires_grad=True)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    xr, yr = torch.randn(12, 1, 8, 8), torch.randint(0, 3, (12,))
    n, window = 7, 3

    def grad_of(p):
        images.grad = None
        torch.nn.functional.cross_entropy(net(p, xr), yr).backward()
        return images.grad.clone()

    def batch(i):
        return images * (1 + 0.1 * i), y

    g_trunc = grad_of(truncated_unroll(net, p0, batch, n, window, 1e-2))
    # reference: one graph through all n steps, with the images cut out of the first n - window steps
    zeros = torch.zeros_like(p0)

    def cut(i):
        x, t = batch(i)
        return (x.detach() if i < n - window else x), t

    p_full, _ = adam_steps(net, p0.clone().requires_grad_(True), cut, n, 1e-2, (zeros, zeros.clone(), 0), True)
    g_full = grad_of(p_full)
    assert g_trunc.abs().sum() > 0
    assert torch.allclose(g_trunc, g_full, rtol=1e-4, atol=1e-7)


@pytest.mark.heavy
def test_ratbptt_learned_soft_labels_stay_raw_and_non_negative_and_round_trip(tiny, accelerator):
    tiny = one_stage(tiny, {**RAT, "iterations": 10, "learn_labels": True, "lr_label": 0.2})
    tiny["evaluation"] = {"runs": 1, "epochs": 5, "random_real": False}
    result = hf_condense.run(hf_condense.load_recipe(tiny), accelerator)
    soft = result.stages[0].soft_labels
    assert soft is not None and bool((soft >= 0).all()) and (soft == 0).any()  # clamped at 0, not a softmax
    assert not torch.allclose(soft.sum(1), torch.ones(len(soft)))  # raw scores, not a distribution
    assert not torch.equal(soft, torch.nn.functional.one_hot(result.stages[0].labels, 10).float())
    ps = hf_condense.load_progressive(result.folder)
    assert ps.schedule()[0]["soft_labels"] is True
    back = ps.stages[0].synset()
    assert torch.equal(back.soft_labels, soft) and torch.equal(back.training_labels(), soft)


def test_ratbptt_stages_are_evaluated_with_adam_as_the_paper(tiny, accelerator, monkeypatch):
    from hf_condense.models import training

    made = []
    original = training.optimizer_for
    monkeypatch.setattr(
        training, "optimizer_for", lambda p, cfg, lr: (made.append((cfg.optimizer, lr)), original(p, cfg, lr))[1]
    )
    tiny = one_stage(tiny, {**RAT, "iterations": 2, "inner_lr": 0.002})
    tiny["evaluation"] = {"runs": 1, "epochs": 4, "random_real": True}
    result = hf_condense.run(hf_condense.load_recipe(tiny), accelerator)
    stage = result.stages[0]
    assert stage.lr == 0.002 and stage.meta["schedule"] == {
        "optimizer": "adam",
        "lr_decay": False,
        "weight_decay": 0.0,
    }
    assert ("adam", 0.002) in made and ("sgd", 0.01) in made  # the distilled set on Adam, random real on the protocol
    row = hf_condense.load_progressive(result.folder).schedule()[0]
    assert row["optimizer"] == "adam" and row["lr_decay"] is False and row["lr"] == 0.002


def test_ratbptt_augments_the_real_batch_and_redraws_the_unroll_once_per_real_epoch(tiny, accelerator, monkeypatch):
    from hf_condense.methods import ratbptt

    lengths, calls = [], []
    original = ratbptt.truncated_unroll
    monkeypatch.setattr(
        ratbptt, "truncated_unroll", lambda net, p0, b, n, *a: (lengths.append(n), original(net, p0, b, n, *a))[1]
    )
    from hf_condense.data.augment import DSA

    dsa_call = DSA.__call__
    monkeypatch.setattr(DSA, "__call__", lambda self, x, g=None: (calls.append(len(x)), dsa_call(self, x, g))[1])
    # 1437 digits at batch_real 500: two real batches per pass, so the unroll length changes only every second step
    tiny = one_stage(tiny, {**RAT, "iterations": 8, "window": 2, "horizon": 40, "batch_real": 500})
    tiny["evaluation"] = {"runs": 1, "epochs": 1, "random_real": False, "augment": False}
    hf_condense.run(hf_condense.load_recipe(tiny), accelerator)
    assert len(lengths) == 8 and all(lengths[i] == lengths[i + 1] for i in (0, 2, 4, 6))
    assert len(set(lengths)) > 1
    assert calls.count(500) == 8  # every meta-loss batch went through the augmentation


def test_multi_formation_decode_and_encode_shapes_and_order():
    from hf_condense.data.formation import decode, encode

    x = torch.rand(8, 3, 8, 8)  # 2 stored images x 4 tiles
    stored = encode(x, 2)
    assert stored.shape == (2, 3, 8, 8)
    dec, y = decode(stored, torch.tensor([4, 7]), 2)
    assert dec.shape == (8, 3, 8, 8) and y.tolist() == [4, 7] * 4
    down = torch.nn.functional.interpolate(x, size=(4, 4), mode="bilinear", antialias=True)
    assert torch.allclose(dec, torch.nn.functional.interpolate(down, size=(8, 8), mode="bilinear"), atol=1e-6)
    soft = torch.softmax(torch.randn(1, 10), 1)
    odd, odd_y = decode(torch.rand(1, 1, 7, 7), soft, 2)  # 7 px: tiles of 4 px over a zero-padded 8 px image
    assert odd.shape == (4, 1, 7, 7) and torch.equal(odd_y, soft.repeat(4, 1))
    assert decode(x, y, 1)[0] is x


@pytest.mark.heavy
def test_idc_stages_record_their_factor_and_train_on_decoded_images(tiny, accelerator, monkeypatch):
    from hf_condense.data.formation import decode
    from hf_condense.data.sources import load_real_data
    from hf_condense.evaluation.protocol import evaluate_synsets
    from hf_condense.methods import context
    from hf_condense.stages.engine import make_context

    tiny["method"] = {
        **IDC,
        "iterations": 2,
        "inner_loop": 2,
        "factor": 2,
        "transition_nets": 1,
        "transition_epochs": 5,
    }
    tiny["stages"] = {"count": 2, "ipc": 1, "scheme": "pdd"}
    result = hf_condense.run(hf_condense.load_recipe(tiny), accelerator)
    ps = hf_condense.load_progressive(result.folder)
    synsets = ps.synsets()
    assert [s.formation_factor for s in synsets] == [2, 2] and len(synsets[0].images) == 10
    assert ps.schedule()[1]["formation_factor"] == 2
    assert "decode(x, y, 2)" in (result.folder / "README.md").read_text()  # the card says how to decode
    recipe = hf_condense.load_recipe(tiny)
    ctx = make_context(recipe, accelerator, load_real_data(recipe.dataset), preprocessor=ps.preprocessor)
    seen = []
    real_runs = context.evaluate_runs
    spy = lambda data, *a, **k: (seen.extend(data), real_runs(data, *a, **k))[1]  # noqa: E731
    monkeypatch.setattr(context, "evaluate_runs", spy)
    evaluate_synsets(ctx, recipe.evaluation.__class__(runs=1, epochs=1), 0, synsets)
    data = seen
    assert len(data[0].images) == 40 and torch.equal(
        data[0].images, decode(synsets[0].images, synsets[0].labels, 2)[0]
    )
    assert torch.equal(data[1].labels, synsets[1].labels.repeat(4))


def test_boosting_multi_formation_stages_is_refused(tiny):
    tiny["method"] = {**IDC, "factor": 2}
    tiny["stages"] = {"count": 2, "ipc": 1, "scheme": "boost", "boost_beta": 0.1}
    with pytest.raises(hf_condense.RecipeError, match="boost_beta"):
        hf_condense.load_recipe(tiny)


def test_herding_init_starts_from_the_herding_coreset(tiny, accelerator):
    from hf_condense.data.sources import load_real_data
    from hf_condense.methods.base import StageTask
    from hf_condense.methods.workspace import init_images
    from hf_condense.stages.engine import make_context

    tiny["method"] = {"name": "herding", "embed_epochs": 1}
    tiny["stages"] = {"count": 1, "ipc": 3}
    coreset = hf_condense.run(hf_condense.load_recipe(tiny), accelerator).stages[0]
    recipe = hf_condense.load_recipe(tiny)
    ctx = make_context(recipe, accelerator, load_real_data(recipe.dataset))
    task = StageTask(1, 3, recipe.method, [], True, False, 0.0, ctx.class_indices, seed=5)
    state = torch.random.get_rng_state()
    images, labels = init_images(ctx, task, "herding", torch.Generator().manual_seed(0))
    assert torch.equal(torch.random.get_rng_state(), state)  # the embedding network leaves the global RNG alone
    assert torch.equal(images, coreset.images) and torch.equal(labels, coreset.labels)
    randoms, _ = init_images(ctx, task, "real", torch.Generator().manual_seed(0))
    assert not torch.equal(randoms, images)


@pytest.mark.heavy
def test_ratbptt_clips_the_images_meta_gradient_only(tiny, accelerator, tmp_path):
    """As the reference: the EMA of the meta-gradient norm is the images' alone, so learning labels leaves the first
    step's norm (where images and their gradients are the same) unchanged."""
    norms = []
    for learn in (False, True):
        recipe = one_stage(copy.deepcopy(tiny), {**RAT, "iterations": 1, "learn_labels": learn, "lr_label": 0.2})
        recipe["evaluation"] = {"runs": 1, "epochs": 1, "random_real": False}
        recipe["output"]["dir"] = str(tmp_path / f"labels_{learn}")
        norms.append(
            hf_condense.run(hf_condense.load_recipe(recipe), accelerator).stages[0].meta["log"]["ema_grad_norm"]
        )
    assert norms[0] > 0 and norms[1] == pytest.approx(norms[0], rel=1e-6)


def test_ratbptt_class_balanced_batches_take_the_same_count_of_every_class(tiny, accelerator, monkeypatch):
    from hf_condense.methods import ratbptt
    from hf_condense.methods.ratbptt import class_balanced

    drawn = []

    def spy(y, per_class, g):
        idx = class_balanced(y, per_class, g)
        drawn.append(y[idx])
        return idx

    monkeypatch.setattr(ratbptt, "class_balanced", spy)
    recipe = one_stage(tiny, {**RAT, "iterations": 1, "batch_per_class": 1}, ipc=2)
    recipe["evaluation"] = {"runs": 1, "epochs": 1, "random_real": False}
    result = hf_condense.run(hf_condense.load_recipe(recipe), accelerator)
    assert result.stages[0].meta["log"]["batch_syn"] == 10 and drawn
    assert all(sorted(labels.tolist()) == list(range(10)) for labels in drawn)  # one image of each class a step

    y = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 0, 1, 2])  # 4 per class, not grouped
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        idx = class_balanced(y, 2, g)
        assert torch.bincount(y[idx], minlength=3).tolist() == [2, 2, 2] and len(set(idx.tolist())) == 6
    assert sorted(class_balanced(y, 9, g).tolist()) == list(range(12))  # a class with fewer gives all it has


def test_ratbptt_refuses_two_batch_sizes(tiny):
    tiny = one_stage(tiny, {**RAT, "batch_per_class": 1, "batch_syn": 10})
    with pytest.raises(RecipeError, match="method.batch_per_class: 1 and method.batch_syn 10 both size the inner"):
        hf_condense.load_recipe(tiny)


@pytest.mark.heavy
def test_pdd_idc_transitions_train_with_idcs_own_recipe(tiny, accelerator, monkeypatch):
    """The PDD + IDC code trains each iteration's network on the earlier unions with IDC's train_only: batch 64,
    lr 0.01, lr x 0.2 at 2/3 and 5/6 of its epochs, CutMix with probability 0.5; not the evaluation's schedule."""
    from hf_condense.methods import sampled

    schedules = []
    original = sampled.fit
    monkeypatch.setattr(
        sampled,
        "fit",
        lambda m, o, x, y, e, lr, cfg, *a, **k: (
            schedules.append((lr, cfg)),
            original(m, o, x, y, e, lr, cfg, *a, **k),
        )[1],
    )
    tiny["method"] = {**IDC, "iterations": 1, "inner_loop": 1, "n_data": 0, "transition_epochs": 3}
    tiny["stages"] = {"count": 2, "ipc": 1}
    tiny["evaluation"] = {"runs": 1, "epochs": 2, "random_real": False, "batch_size": 256, "lr": 0.02}
    hf_condense.run(hf_condense.load_recipe(tiny), accelerator)
    assert schedules
    for lr, cfg in schedules:
        assert (lr, cfg.batch_size, cfg.decay_at, cfg.decay_factor, cfg.cutmix) == (0.01, 64, (2 / 3, 5 / 6), 0.2, 0.5)


def test_multistep_decay_and_cutmix_in_training():
    from hf_condense.models.training import batch_gradient, scheduled_epochs, soft_cross_entropy

    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    lrs = [opt.param_groups[0]["lr"] for _ in scheduled_epochs(opt, 1.0, 60, True, (2 / 3, 5 / 6), 0.2)]
    assert lrs == [1.0] * 40 + [pytest.approx(0.2)] * 10 + [pytest.approx(0.04)] * 10  # IDC: MultiStepLR at 40, 50
    halves = [opt.param_groups[0]["lr"] for _ in scheduled_epochs(opt, 1.0, 5)]
    assert halves == [1.0, 1.0, pytest.approx(0.1), pytest.approx(0.1), pytest.approx(0.1)]  # the protocol's

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    x, y, other = torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2]), torch.tensor([2, 2, 1, 1, 0, 0])
    _, loss = batch_gradient(model, x, y, 4, (other, 0.7))
    with torch.no_grad():
        expected = 0.7 * soft_cross_entropy(model(x), y) + 0.3 * soft_cross_entropy(model(x), other)
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)
