"""MTT: exact unroll gradients, memory-bounded equality, experts cache, divergence, and that it works on digits."""

from __future__ import annotations

import json

import pytest
import timm
import torch

import hf_condense
from hf_condense.methods import DivergenceError
from hf_condense.methods.unroll import (
    CompiledUnroll,
    batched_unroll_backward,
    matching_loss,
    sgd_steps,
    unroll_backward,
)
from hf_condense.models.functional import FlatParams
from hf_condense.models.training import soft_cross_entropy
from hf_condense.stages.recipe import load_recipe

from ..conftest import no_cxx, tiny_mtt


def tiny_problem(dtype=torch.float64, n=6, steps=4):
    torch.manual_seed(0)
    model = timm.create_model("test_convnet", num_classes=3, in_chans=1, img_size=8).to(dtype)
    net = FlatParams(model)
    start = net.flatten()
    target = start + 0.05 * torch.randn_like(start)
    images = torch.randn(n, 1, 8, 8, dtype=dtype, requires_grad=True)
    labels = torch.arange(n) % 3
    alpha = torch.tensor(0.05, dtype=dtype, requires_grad=True)
    g = torch.Generator().manual_seed(0)
    idx = [torch.randperm(n, generator=g)[:4] for _ in range(steps)]

    def batch(j):
        return images[idx[j]], labels[idx[j]]

    return net, start, target, images, alpha, batch, steps


def loss_at(net, start, target, images_value, images, alpha_value, batch, steps):
    with torch.no_grad():
        images.copy_(images_value)
    th = sgd_steps(
        net,
        start.clone().requires_grad_(True),
        torch.tensor(alpha_value, dtype=start.dtype),
        batch,
        range(steps),
        keep_graph=False,
    )
    return float(matching_loss(th.detach(), start, target))


def test_unroll_gradient_matches_finite_differences():
    net, start, target, images, alpha, batch, steps = tiny_problem()
    unroll_backward(net, start, target, alpha, batch, steps)
    g_img, g_alpha = images.grad.clone(), alpha.grad.clone()
    base = images.detach().clone()
    v = torch.randn_like(base)
    eps = 1e-5
    fd = (
        loss_at(net, start, target, base + eps * v, images, 0.05, batch, steps)
        - loss_at(net, start, target, base - eps * v, images, 0.05, batch, steps)
    ) / (2 * eps)
    assert abs(fd - float((g_img * v).sum())) < 1e-6 * max(1.0, abs(fd))
    fd_a = (
        loss_at(net, start, target, base, images, 0.05 + eps, batch, steps)
        - loss_at(net, start, target, base, images, 0.05 - eps, batch, steps)
    ) / (2 * eps)
    assert abs(fd_a - float(g_alpha)) < 1e-6 * max(1.0, abs(fd_a))


@pytest.mark.parametrize("segments", [2, 3, 7])
def test_checkpointed_unroll_gradients_equal_plain(segments):
    net, start, target, images, alpha, batch, steps = tiny_problem(dtype=torch.float32, steps=7)
    plain = unroll_backward(net, start, target, alpha, batch, steps, segments=1)
    g_img, g_alpha = images.grad.clone(), alpha.grad.clone()
    images.grad = alpha.grad = None
    ckpt = unroll_backward(net, start, target, alpha, batch, steps, segments=segments)
    assert plain == ckpt  # the replay is bitwise identical
    assert ((images.grad - g_img).norm() / g_img.norm()) < 1e-4
    assert abs(float(alpha.grad - g_alpha)) / abs(float(g_alpha)) < 1e-4


@pytest.mark.parametrize("micro_batch, segments", [(1, 1), (3, 1), (3, 3)])
def test_micro_batched_unroll_gradients_equal_plain(micro_batch, segments):
    net, start, target, images, alpha, batch, steps = tiny_problem(dtype=torch.float32, steps=5)
    plain = unroll_backward(net, start, target, alpha, batch, steps)
    g_img, g_alpha = images.grad.clone(), alpha.grad.clone()
    images.grad = alpha.grad = None
    chunked = unroll_backward(net, start, target, alpha, batch, steps, segments=segments, micro_batch=micro_batch)
    assert abs(chunked - plain) <= 1e-5 * plain
    assert ((images.grad - g_img).norm() / g_img.norm()) < 1e-5
    assert abs(float(alpha.grad - g_alpha)) / abs(float(g_alpha)) < 1e-5


@pytest.mark.parametrize("soft", [False, True])
def test_micro_batched_gradient_is_the_batch_mean_gradient(soft):
    net, start, *_ = tiny_problem(dtype=torch.float64)
    x = torch.randn(7, 1, 8, 8, dtype=torch.float64)
    y = torch.softmax(torch.randn(7, 3, dtype=torch.float64), 1) if soft else torch.arange(7) % 3
    theta = start.clone().requires_grad_(True)
    whole = net.grad(theta, x, y, False, None, soft_cross_entropy)
    for size in (1, 2, 5, 7, 100):
        assert torch.allclose(net.grad(theta, x, y, False, size, soft_cross_entropy), whole, rtol=1e-10, atol=1e-12)


def test_batched_unroll_equals_separate_unrolls():
    """K students under vmap give the K plain unrolls' losses and summed gradients (different starts, batches and
    augmentation per student)."""
    from hf_condense.data.augment import DSA

    net, start, target, images, alpha, _, steps = tiny_problem()
    k, dsa, g = 3, DSA(), torch.Generator().manual_seed(1)
    starts = start + 0.05 * torch.randn(k, len(start), dtype=start.dtype)
    targets = starts + 0.05 * torch.randn_like(starts)
    idx = [[torch.randperm(6, generator=g)[:4] for _ in range(steps)] for _ in range(k)]
    augs = [[dsa.sample(4, (8, 8), g) for _ in range(steps)] for _ in range(k)]
    labels = torch.arange(6) % 3

    def one(i):
        return lambda j: (dsa.apply(images[idx[i][j]], augs[i][j]), labels[idx[i][j]])

    separate = [unroll_backward(net, starts[i], targets[i], alpha, one(i), steps, scale=0.5) for i in range(k)]
    g_img, g_alpha = images.grad.clone(), alpha.grad.clone()
    images.grad = alpha.grad = None

    def batches(j):
        xs, ys = zip(*(one(i)(j) for i in range(k)))
        return torch.stack(xs), torch.stack(ys)

    together = batched_unroll_backward(net, starts, targets, alpha, batches, steps, scale=0.5)
    assert together == pytest.approx(separate, rel=1e-10)
    assert torch.allclose(images.grad, g_img, rtol=1e-9, atol=1e-14)
    assert torch.allclose(alpha.grad, g_alpha, rtol=1e-9)


@pytest.mark.heavy
def test_a_failed_unroll_compile_warns_once_and_gives_the_plain_gradients(fresh_compile, caplog):
    """After a failed compile: one warning, then the plain unroll, with nothing half-accumulated. (A real compile's
    equality with the plain unroll: test_compiled_unroll_distils_the_same_images_and_is_recorded.)"""
    import logging

    net, start, target, images, alpha, batch, steps = tiny_problem(dtype=torch.float32, steps=5)
    again = unroll_backward(net, start, target, alpha, batch, steps, scale=0.5)
    g_img, g_alpha = images.grad.clone(), alpha.grad.clone()
    images.grad = alpha.grad = None
    with no_cxx(), caplog.at_level(logging.WARNING, logger="hf_condense.compile"):
        unroll = CompiledUnroll(net, torch.device("cpu"))
        assert unroll.backward(start, target, alpha, batch, steps, scale=0.5) == again
        assert torch.equal(images.grad, g_img) and torch.equal(alpha.grad, g_alpha)  # nothing half-accumulated
        unroll.backward(start, target, alpha, batch, steps, scale=0.5)
    assert len([r for r in caplog.records if r.name == "hf_condense.compile"]) == 1


@pytest.mark.heavy
def test_compiled_unroll_distils_the_same_images_and_is_recorded(tiny, accelerator, tmp_path, fresh_compile):
    import copy

    runs = []
    for on in (False, True):
        recipe = copy.deepcopy(tiny)
        recipe["output"]["dir"] = str(tmp_path / f"compiled_{on}")
        recipe["evaluation"]["epochs"] = 1
        result = hf_condense.run(mtt_recipe(recipe, iterations=3, compile_unroll=on), accelerator)
        meta = json.loads((tmp_path / f"compiled_{on}" / "stage_1" / "stage.json").read_text())
        assert meta["log"]["compiled_unroll"] is on
        runs.append((result.stages[0].images, result.stages[0].lr))
    (a, lr_a), (b, lr_b) = runs
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-5) and lr_a == pytest.approx(lr_b, rel=1e-5)


def test_compile_unroll_refuses_what_it_replaces_and_leaves_stage_hashes(tiny):
    from hf_condense.core.config import RecipeError

    with pytest.raises(RecipeError, match="compute.compile_unroll"):
        mtt_recipe(tiny, compile_unroll=True, memory="checkpoint")
    with pytest.raises(RecipeError, match="compute.compile_unroll"):
        mtt_recipe(tiny, compile_unroll=True, micro_batch=4)
    on, off = mtt_recipe(tiny, compile_unroll=True), mtt_recipe(tiny)
    assert on.stage_hashes() == off.stage_hashes()  # float round-off only


@pytest.mark.heavy
def test_vectorized_trajectories_distil_the_same_images(tiny, accelerator, tmp_path, monkeypatch):
    import copy

    from hf_condense.methods import mtt

    calls = []
    original = mtt.batched_unroll_backward
    monkeypatch.setattr(mtt, "batched_unroll_backward", lambda *a, **k: (calls.append(1), original(*a, **k))[1])
    runs = []
    for vec in (False, True):
        recipe = copy.deepcopy(tiny)
        recipe["output"]["dir"] = str(tmp_path / f"vec_{vec}")
        recipe["evaluation"]["epochs"] = 1
        result = hf_condense.run(
            mtt_recipe(recipe, iterations=4, trajectories=3, vectorize_trajectories=vec), accelerator
        )
        runs.append((result.stages[0].images, result.stages[0].lr))
    (a, lr_a), (b, lr_b) = runs
    assert len(calls) == 4  # one vmapped unroll per iteration, only when asked for
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-5) and not torch.equal(a, a.new_zeros(a.shape))
    assert lr_a == pytest.approx(lr_b, rel=1e-5)


def test_vectorized_trajectories_refuse_memory_bounded_modes(tiny):
    from hf_condense.core.config import RecipeError

    with pytest.raises(RecipeError, match="compute.vectorize_trajectories"):
        mtt_recipe(tiny, vectorize_trajectories=True, memory="checkpoint")


def mtt_recipe(tiny, **method):
    tiny["method"] = tiny_mtt(**method)
    tiny["stages"] = {"count": 1, "ipc": 1}
    tiny["evaluation"].update({"runs": 3, "epochs": 100, "random_real": True})
    return load_recipe(tiny)


@pytest.mark.heavy
def test_mtt_lowers_matching_loss_and_beats_random_real(tiny, accelerator, tmp_path):
    result = hf_condense.run(mtt_recipe(tiny, iterations=60), accelerator)
    meta = json.loads((tmp_path / "out" / "stage_1" / "stage.json").read_text())
    assert meta["log"]["loss_end"] < 0.8 * meta["log"]["loss_start"]
    assert meta["log"]["micro_batch"] == "whole batch (auto)"  # tiny images: one chunk holds the batch
    (mtt_acc, _), (rand_acc, _) = result.distilled[0], result.random_real[0]
    assert mtt_acc > rand_acc + 0.05, (mtt_acc, rand_acc)


@pytest.mark.heavy
def test_alpha_is_learned_positive_saved_and_used_by_evaluation(tiny, accelerator, tmp_path, monkeypatch):
    from hf_condense.models import training

    seen = []
    original = training.fit
    monkeypatch.setattr(training, "fit", lambda *a, **k: (seen.append(a[5]), original(*a, **k))[1])
    result = hf_condense.run(mtt_recipe(tiny, iterations=10), accelerator)
    alpha = result.stages[0].lr
    assert alpha > 0 and alpha != 0.01
    assert json.loads((tmp_path / "out" / "stage_1" / "stage.json").read_text())["lr"] == alpha
    assert seen[0] == alpha  # evaluation trains at the learned lr


@pytest.mark.heavy
def test_expert_cache_is_reused_and_corruption_is_caught(tiny, accelerator, tmp_path, monkeypatch, caplog):
    from hf_condense.methods.experts import ExpertStore

    trained = []
    original = ExpertStore.train_group
    monkeypatch.setattr(
        ExpertStore, "train_group", lambda self, es, *a: (trained.extend(es), original(self, es, *a))[1]
    )
    tiny["evaluation"]["runs"] = 1
    hf_condense.run(mtt_recipe(tiny, iterations=2), accelerator)
    assert trained == [0, 1]
    tiny["output"]["dir"] = str(tmp_path / "second")
    hf_condense.run(mtt_recipe(tiny, iterations=3), accelerator)  # another recipe, same experts
    assert trained == [0, 1]
    files = sorted((tmp_path / "cache" / "experts").glob("*/expert_0001.safetensors"))
    assert len(files) == 1
    files[0].write_bytes(files[0].read_bytes()[:-100])  # truncate
    tiny["output"]["dir"] = str(tmp_path / "third")
    with caplog.at_level("WARNING"):
        hf_condense.run(mtt_recipe(tiny, iterations=4), accelerator)
    assert trained == [0, 1, 1]
    assert "expert_0001.safetensors" in caplog.text and "rebuilding" in caplog.text


def test_divergence_stops_with_last_good_state(tiny, accelerator, tmp_path):
    recipe = mtt_recipe(tiny, iterations=50, lr_lr=1e3)
    with pytest.raises(DivergenceError, match="diverged at iteration") as info:
        hf_condense.run(recipe, accelerator)
    assert "lower method.lr_img or method.lr_lr" in str(info.value)
    assert (tmp_path / "out" / ".checkpoints" / "stage_1" / "mtt.safetensors").is_file()


@pytest.mark.heavy
def test_killed_stage_resumes_from_its_checkpoint_with_the_same_result(tiny, accelerator, tmp_path, monkeypatch):
    from hf_condense.methods import mtt, unroll

    tiny["evaluation"]["runs"] = 1
    full = hf_condense.run(mtt_recipe(tiny, iterations=25, checkpoint_every=10), accelerator)
    tiny["output"]["dir"] = str(tmp_path / "killed")
    calls = {"n": 0}
    original = unroll.unroll_backward

    def dies_at_17(*a, **k):
        calls["n"] += 1
        if calls["n"] == 17:
            raise KeyboardInterrupt
        return original(*a, **k)

    monkeypatch.setattr(mtt, "unroll_backward", dies_at_17)
    with pytest.raises(KeyboardInterrupt):
        hf_condense.run(mtt_recipe(tiny, iterations=25, checkpoint_every=10), accelerator)
    monkeypatch.setattr(mtt, "unroll_backward", original)
    calls["n"] = 0
    monkeypatch.setattr(
        mtt, "unroll_backward", lambda *a, **k: (calls.__setitem__("n", calls["n"] + 1), original(*a, **k))[1]
    )
    resumed = hf_condense.run(mtt_recipe(tiny, iterations=25, checkpoint_every=10), accelerator)
    assert calls["n"] == 9  # resumed at iteration 16: the interrupted one, rewound and saved
    assert torch.equal(full.stages[0].images, resumed.stages[0].images)
    assert full.stages[0].lr == resumed.stages[0].lr


@pytest.mark.heavy
def test_transition_experts_caps_the_experts_retrained_for_later_stages(tiny, accelerator, tmp_path):
    from ..conftest import tiny_mtt

    tiny["method"] = tiny_mtt(iterations=3, num_experts=2, transition_experts=1, transition_epochs=2)
    tiny["stages"] = {"count": 3, "ipc": 1, "scheme": "pdd"}
    tiny["evaluation"].update({"runs": 1, "epochs": 2})
    hf_condense.run(load_recipe(tiny), accelerator)
    folders = {p.parent for p in (tmp_path / "cache").glob("experts/*/expert_*.safetensors")}
    assert sorted(len(list(f.glob("expert_*.safetensors"))) for f in folders) == [1, 1, 2]


@pytest.mark.parametrize("scope", ["init", "real"])
def test_forgetting_curriculum_scope(tiny, accelerator, tmp_path, monkeypatch, scope):
    """PDD section 4.2 for MTT. `init` (default, the public code): the band only chooses the images a stage starts
    from, its experts train on all real data; `real` (the paper's text): the experts' real epochs (base experts for
    stage 1, transition experts after) see exactly the stage's band. The last band is open-ended."""
    from hf_condense.models.stacked import StackedNets
    from hf_condense.models.training import NetGroup

    seen = []
    for cls in (NetGroup, StackedNets):
        original = cls.train_epoch
        monkeypatch.setattr(
            cls, "train_epoch", lambda net, x, *a, _o=original: (seen.append(len(x)), _o(net, x, *a))[1]
        )
    tiny["method"] = tiny_mtt(iterations=2, num_experts=1, transition_epochs=1, lr_lr=1e-7)
    tiny["stages"] = {"count": 2, "ipc": 1, "curriculum": "forgetting", "forgetting_band": 1.0, "forgetting_epochs": 4}
    tiny["stages"]["curriculum_scope"] = scope
    tiny["evaluation"].update({"runs": 1, "epochs": 2})
    hf_condense.run(load_recipe(tiny), accelerator)
    epochs = 2 + 1  # max_start_epoch + expert_epochs
    metas = [json.loads((tmp_path / "out" / f"stage_{k}" / "stage.json").read_text()) for k in (1, 2)]
    bands = [round(m["curriculum"]["init_fraction"] * 1437) for m in metas]
    assert all(0 < b < 1437 for b in bands) and [m["curriculum"]["band"] for m in metas] == [[0.0, 1.0], [1.0, None]]
    assert all(m["curriculum"]["scope"] == scope for m in metas)
    if scope == "real":
        assert [round(m["real_fraction"] * 1437) for m in metas] == bands
        assert seen == [bands[0]] * epochs + [bands[1]] * epochs
    else:
        assert [m["real_fraction"] for m in metas] == [1.0, 1.0]
        assert seen == [1437] * (2 * epochs)


@pytest.mark.heavy
def test_experts_command_builds_the_experts_the_first_stage_uses(tiny, accelerator, tmp_path):
    from hf_condense.cli.experts import build_experts

    tiny["method"] = tiny_mtt(iterations=2, num_experts=1, lr_lr=1e-7)
    tiny["stages"] = {"count": 1, "ipc": 1, "curriculum": "forgetting", "forgetting_band": 1.0, "forgetting_epochs": 4}
    tiny["evaluation"].update({"runs": 1, "epochs": 2})
    recipe = load_recipe(tiny)
    build_experts(recipe)
    built = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").glob("experts/*/*.safetensors")}
    hf_condense.run(recipe, accelerator)
    after = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").glob("experts/*/*.safetensors")}
    assert len(built) == 1 and after == built  # the run trained nothing: it used the band's prebuilt expert


def test_a_stage_diverging_on_a_narrow_band_says_so(tiny, accelerator):
    tiny["method"] = tiny_mtt(iterations=2, num_experts=1, transition_epochs=1, lr_lr=1e-4)
    tiny["stages"] = {"count": 2, "ipc": 1, "curriculum": "forgetting", "forgetting_band": 1.0, "forgetting_epochs": 4}
    tiny["stages"]["curriculum_scope"] = "real"  # experts on the band alone (the paper's text)
    tiny["evaluation"].update({"runs": 1, "epochs": 2})
    with pytest.raises(DivergenceError, match=r"lr_lr; this stage's experts trained on \d+ of 1437 real examples"):
        hf_condense.run(load_recipe(tiny), accelerator)
    from hf_condense.methods.mtt import band_hint

    assert band_hint([torch.arange(3), torch.arange(3, 5)], 5) == ""  # no band, no extra hint


def test_validation_selection_keeps_the_best_iterate_and_never_tests_on_the_test_split(
    tiny, accelerator, tmp_path, monkeypatch
):
    from hf_condense.methods import context, loop

    flags, snaps, scripted = [], [], iter([0.9, 0.2])  # the iterate of iteration 5 is the best one
    real_held_out = context.RunContext.held_out

    def spy(self, validation=False):
        flags.append(validation)
        return real_held_out(self, validation)

    monkeypatch.setattr(context.RunContext, "held_out", spy)
    real_periodic = loop.periodic_test
    monkeypatch.setattr(
        loop,
        "periodic_test",
        lambda ctx, task, cur, *a: (
            snaps.append(cur.images.clone()),
            real_periodic(ctx, task, cur, *a),
            next(scripted),
        )[2],
    )
    tiny["method"] = tiny_mtt(iterations=10, lr_lr=1e-7)
    tiny["stages"] = {"count": 1, "ipc": 1}
    tiny["evaluation"].update(
        {"runs": 1, "epochs": 3, "every": 5, "every_epochs": 2, "select": "validation", "validation_per_class": 20}
    )
    result = hf_condense.run(load_recipe(tiny), accelerator)
    assert flags[:2] == [True, True] and not any(flags[2:])  # periodic tests on validation, the protocol on test
    meta = json.loads((tmp_path / "out" / "stage_1" / "stage.json").read_text())
    assert meta["log"]["selected_iteration"] == 5 and meta["log"]["validation_accuracy"] == 0.9
    assert torch.equal(result.stages[0].images, snaps[0]) and not torch.equal(snaps[0], snaps[1])
    run_json = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run_json["stage_hashes"] != hf_condense.load_recipe(tiny, ["evaluation.select=last"]).stage_hashes()


def test_validation_split_is_held_out_of_the_train_split(digits):
    held = digits.hold_out(20, seed=0)
    assert len(held.val_y) == 200 and torch.bincount(held.val_y).tolist() == [20] * 10
    assert len(held.train_y) == len(digits.train_y) - 200
    rows = {tuple(r.flatten().tolist()) for r in held.train_x}
    assert sum(tuple(r.flatten().tolist()) in rows for r in held.val_x) < 10  # (digits has a few duplicate images)
    assert torch.equal(digits.hold_out(20, seed=0).val_x, held.val_x)


def test_trajectories_are_vectorized_by_default_only_where_it_pays():
    from hf_condense.methods.mtt import MTTConfig, vectorized

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert not vectorized(MTTConfig(trajectories=4), cpu)  # grouped kernels are slower on CPUs
    assert vectorized(MTTConfig(trajectories=4), cuda)  # launch-bound GPUs: one batched unroll
    assert not vectorized(MTTConfig(trajectories=1), cuda)  # nothing to batch
    assert not vectorized(MTTConfig(trajectories=4, memory="checkpoint"), cuda)
    assert not vectorized(MTTConfig(trajectories=4, micro_batch=5), cuda)
    assert vectorized(MTTConfig(trajectories=4, vectorize_trajectories=True), cpu)  # a recipe value wins
    assert not vectorized(MTTConfig(trajectories=4, vectorize_trajectories=False), cuda)


def test_tf32_is_a_recipe_choice_recorded_in_the_run(tiny, accelerator, tmp_path):
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    try:
        recipe = mtt_recipe(tiny, iterations=2)
        recipe.tf32 = True
        recipe.evaluation.random_real = False
        hf_condense.run(recipe, accelerator)
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
        assert json.loads((tmp_path / "out" / "run.json").read_text())["tf32"] is True
        assert recipe.stage_hashes() == mtt_recipe(tiny, iterations=2).stage_hashes()  # how, not what, is computed
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def test_start_epochs_are_drawn_below_max_start_epoch():
    """As the official code's np.random.randint(min, max): max_start_epoch itself is never a start."""
    from hf_condense.methods.mtt import MTTConfig, start_epoch

    g = torch.Generator().manual_seed(0)
    cfg = MTTConfig(name="mtt", min_start_epoch=1, max_start_epoch=4)
    assert {start_epoch(cfg, g) for _ in range(300)} == {1, 2, 3}


def test_expert_lr_trains_the_experts_and_lr_teacher_starts_alpha(tiny):
    from hf_condense.methods.mtt import expert_settings

    tiny["method"] = tiny_mtt(lr_teacher=0.02)
    plain = load_recipe(tiny)
    assert expert_settings(plain.method, 0).lr == 0.02
    tiny["method"] = tiny_mtt(lr_teacher=0.02, expert_lr=0.05)
    split = load_recipe(tiny)
    assert expert_settings(split.method, 0).lr == 0.05 and split.method.lr_teacher == 0.02
    assert split.distill_hash() != plain.distill_hash()
    tiny["method"] = tiny_mtt(lr_teacher=0.02, expert_lr=None)
    assert load_recipe(tiny).distill_hash() == plain.distill_hash()  # unset: hashed as before the key existed


@pytest.mark.heavy
def test_later_stages_probe_from_where_the_evaluation_leaves_the_earlier_stages(tiny, accelerator, monkeypatch):
    """A stage-2 periodic test equals a progressive run over stage 1 (its evaluation epochs) then the current images
    (the probe's epochs), on the validation split, so the kept iterate is the best one for the progressive
    evaluation; it used to train a fresh network on the union."""
    import dataclasses

    from hf_condense.cli.distill import prepare
    from hf_condense.methods import loop
    from hf_condense.methods.loop import PROBE_SALT
    from hf_condense.models.runs import protocol_seeds

    seen = []
    real_periodic = loop.periodic_test

    def spy(ctx, task, cur, cache):
        acc = real_periodic(ctx, task, cur, cache)
        seen.append((task, dataclasses.replace(cur, images=cur.images.clone()), acc))
        return acc

    monkeypatch.setattr(loop, "periodic_test", spy)
    tiny["method"] = tiny_mtt(iterations=4, lr_lr=1e-7)
    tiny["stages"] = {"count": 2, "ipc": 1}
    tiny["evaluation"].update(
        {"runs": 1, "epochs": 6, "every": 2, "every_epochs": 3, "select": "validation", "validation_per_class": 20}
    )
    recipe = load_recipe(tiny)
    result = hf_condense.run(recipe, accelerator)
    later = [(t, c, a) for t, c, a in seen if t.stage == 2]
    assert len(later) == 2  # iterations 2 and 4
    ctx = prepare(recipe, accelerator)
    seeds = protocol_seeds(recipe.seed, PROBE_SALT, 1)
    for task, current, acc in later:
        probed = dataclasses.replace(current, meta={**current.meta, "epochs": 3})
        progressive = ctx.train_and_test(
            [result.stages[0], probed], task.train, "progressive", seeds, on_validation=True
        )
        assert acc == progressive[0][-1]
