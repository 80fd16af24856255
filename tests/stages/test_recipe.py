"""Recipes: parsing, overrides, and one clear line for each kind of bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from hf_condense.methods.mtt import MTTConfig
from hf_condense.stages.recipe import Recipe, RecipeError, load_recipe

from ..conftest import tiny_mtt

RECIPES = sorted((Path(__file__).resolve().parents[2] / "recipes").glob("*.yaml"))


def errors_of(data, overrides=()):
    with pytest.raises(RecipeError) as info:
        load_recipe(data, overrides)
    return info.value.errors


def test_defaults_and_typed_sections(tiny):
    r = load_recipe(tiny)
    assert isinstance(r, Recipe)
    assert r.stages.count == 2 and r.stages.ipc_of(2) == 2
    assert r.evaluation.momentum == 0.9 and r.evaluation.weight_decay == 5e-4


def test_method_section_is_typed_per_method(tiny):
    tiny["method"] = {"name": "mtt", "syn_steps": 7}
    r = load_recipe(tiny)
    assert isinstance(r.method, MTTConfig) and r.method.syn_steps == 7 and r.method.lr_teacher == 0.01


def test_dotted_overrides(tiny):
    tiny["method"] = {"name": "mtt"}
    r = load_recipe(tiny, ["method.iterations=200", "output.dir=elsewhere", "stages.ipc=[1, 2]"])
    assert r.method.iterations == 200 and r.output.dir == "elsewhere" and r.stages.ipc == [1, 2]


def test_exponent_floats_without_a_dot_are_floats(tiny):
    # PyYAML (YAML 1.1) reads 1e-7 as a string; a float field takes it as the number, other strings stay refused
    tiny["method"] = {"name": "mtt", "lr_img": "1E3"}
    r = load_recipe(tiny, ["method.lr_lr=1e-7"])
    assert r.method.lr_lr == 1e-7 and r.method.lr_img == 1000.0
    tiny["method"] = {"name": "mtt", "lr_lr": "1e-7x"}
    (err,) = errors_of(tiny)
    assert err.startswith("method.lr_lr: expected float")
    tiny["method"] = {"name": "mtt", "iterations": "1e3"}
    (err,) = errors_of(tiny)
    assert err.startswith("method.iterations: expected int")


def test_unknown_key_suggests_the_right_one(tiny):
    tiny["evaluation"]["epoch"] = 3
    (err,) = errors_of(tiny)
    assert err.startswith("evaluation.epoch: unknown key") and "did you mean 'epochs'" in err


def test_unknown_method_key(tiny):
    tiny["method"] = {"name": "mtt", "synsteps": 3}
    (err,) = errors_of(tiny)
    assert "method.synsteps" in err and "syn_steps" in err


@pytest.mark.parametrize(
    "path,value,needle",
    [
        ("stages.count", 0, "stages.count: 0 is too small; must be >= 1"),
        ("stages.ipc", 0, "stages.ipc: 0 is too small"),
        ("evaluation.lr", -0.1, "evaluation.lr: -0.1 is too small; must be > 0"),
        ("evaluation.momentum", 1.5, "evaluation.momentum: 1.5 is too large"),
    ],
)
def test_impossible_values(tiny, path, value, needle):
    errors = errors_of(tiny, [f"{path}={value}"])
    assert any(needle in e for e in errors), errors


def test_mtt_start_epochs_and_expert_lr_are_checked(tiny):
    from ..conftest import tiny_mtt

    tiny["method"] = tiny_mtt(min_start_epoch=2, max_start_epoch=2)
    errors = errors_of(tiny)
    assert errors and all(
        e.startswith("method.min_start_epoch: 2 leaves no start epoch below max_start_epoch 2 (starts are")
        for e in errors
    ), errors
    tiny["method"] = tiny_mtt(expert_lr=0)
    assert errors_of(tiny) == ["method.expert_lr: 0.0 is too small; must be > 0"]


def test_all_errors_reported_together(tiny):
    tiny["stages"]["count"] = 0
    tiny["evaluation"]["runs"] = "x"
    tiny["bogus"] = 1
    assert len(errors_of(tiny)) == 3


def test_unknown_method_and_model(tiny):
    tiny["method"] = {"name": "mttt"}
    assert "did you mean 'mtt'" in errors_of(tiny)[0]


def test_unknown_timm_model(tiny):
    tiny["model"] = {"name": "resnet181"}
    (err,) = errors_of(tiny)
    assert err.startswith("model.name: 'resnet181' is not a timm model") and "resnet18" in err


def test_stage_overrides_are_checked(tiny):
    tiny["method"] = {"name": "mtt"}
    tiny["stages"]["overrides"] = [{"syn_step": 3}]
    assert errors_of(tiny)[0].startswith("stages.overrides[0].syn_step: unknown key")


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_every_shipped_recipe_validates_and_builds_its_model(path):
    """Each recipe parses, starts with its comment block (a paper-scale one naming its sources), and its model
    builds for its dataset's shape."""
    from hf_condense.models import build_model

    text = path.read_text()
    assert text.startswith("#") and all(f"\n# {k}:" in text for k in ("Run", "Expected", "Status")), path.name
    if not path.stem.endswith("_cpu") and path.stem != "quickstart":  # paper scale: where its values are from
        assert "\n# Source" in text, f"{path.name}: a '# Source(s): ...' header line"
    r = load_recipe(path)
    shapes = {
        "cifar100": (3, 32, 100),
        "cifar10": (3, 32, 10),
        "tiny-imagenet": (3, 64, 200),
        "fashion": (1, 28, 10),
        "digits": (1, 8, 10),
    }
    c, size, classes = next(v for k, v in shapes.items() if k in r.dataset.path.lower())

    model = build_model(r.model, classes, c, size)
    assert model(torch.zeros(2, c, size, size)).shape == (2, classes)
    assert yaml.safe_load(text)  # plain YAML


def test_a_scheme_evaluates_in_its_own_mode_unless_the_recipe_says(tiny):
    from hf_condense.stages.recipe import load_recipe

    tiny["stages"] = {"count": 2, "ipc": 1, "scheme": "boost"}
    tiny["evaluation"].pop("mode", None)
    assert load_recipe(tiny).evaluation.mode == "union"  # Boost-DD evaluates each nested prefix from scratch
    assert load_recipe(tiny, ["evaluation.mode=progressive"]).evaluation.mode == "progressive"
    tiny["stages"]["scheme"] = "pdd"
    assert load_recipe(tiny).evaluation.mode == "progressive"


def test_validation_selection_needs_periodic_tests(tiny):
    from hf_condense.stages.recipe import load_recipe

    with pytest.raises(RecipeError, match=r"evaluation.select: 'validation' selects among periodic tests"):
        load_recipe(tiny, ["evaluation.select=validation"])


def test_a_folder_from_before_later_stages_probed_from_earlier_stages_is_named_as_such(tiny):
    from hf_condense.stages.recipe import PROBE_START

    from ..conftest import tiny_mtt

    tiny["method"] = tiny_mtt()
    tiny["stages"] = {"count": 2, "ipc": 1}
    tiny["evaluation"].update({"every": 2, "select": "validation"})
    r = load_recipe(tiny)
    first, second = r.earlier_hashes()
    old = r.distill_hash(2, probe_start=False)
    assert old != r.distill_hash(2) and PROBE_START in second[old]
    assert r.distill_hash(1, probe_start=False) == r.distill_hash(1)  # stage 1's probes did not change
    assert not any(PROBE_START in reason for reason in first.values())


def test_the_curriculum_scope_defaults_to_the_methods_official_one(tiny):
    """PDD + IDC's code filters all the real data a stage sees to its band (real); PDD + MTT's only the images a
    stage starts from (init). A recipe's scope wins, and an MTT recipe hashes as when init was the default."""
    from ..conftest import tiny_mtt

    tiny["stages"] = {"count": 2, "ipc": 1, "curriculum": "forgetting"}
    tiny["method"] = {"name": "idc", "iterations": 2}
    assert load_recipe(tiny).curriculum_scope == "real"
    assert load_recipe(tiny, ["stages.curriculum_scope=init"]).curriculum_scope == "init"
    tiny["method"] = tiny_mtt()
    mtt = load_recipe(tiny)
    assert mtt.curriculum_scope == "init"
    assert mtt.stage_hashes() == load_recipe(tiny, ["stages.curriculum_scope=init"]).stage_hashes()


@pytest.mark.parametrize(
    "model", [{"name": "resnet18"}, {"name": "convnet_d3w32", "kwargs": {"norm": "batch"}}], ids=["name", "kwargs"]
)
@pytest.mark.parametrize("method", ["mtt", "ratbptt"])
def test_a_functional_method_refuses_a_model_with_running_statistics(tiny, model, method):
    """Checked on the model as built, whether its name or its kwargs chose batch norm: refused before any data."""
    tiny["method"], tiny["model"] = {"name": method}, model
    (err,) = errors_of(tiny)
    assert err.startswith(f"model.name: {model['name']!r} keeps running statistics (BatchNorm2d)") and method in err


def test_a_functional_method_takes_a_timm_model_without_running_statistics(tiny):
    tiny["method"], tiny["model"] = {"name": "mtt"}, {"name": "convnet_d3w32", "kwargs": {"norm": "instance"}}
    load_recipe(tiny)
    tiny["method"], tiny["model"] = {"name": "dm"}, {"name": "resnet18"}  # DM trains batch-norm networks as usual
    load_recipe(tiny)


def test_the_shipped_recipes_keep_the_stage_hashes_their_folders_hold():
    """Run folders made by earlier releases resume: each shipped recipe hashes as stored in data/stage_hashes.json.
    A deliberate change of a recipe's values (or a method's revision) rewrites that file in the same commit."""
    import json

    stored = json.loads((Path(__file__).parent / "data" / "stage_hashes.json").read_text())
    assert sorted(stored) == sorted(path.stem for path in RECIPES)
    for path in RECIPES:
        recipe = load_recipe(path)
        accepted = [{now, *same} for now, same in zip(recipe.stage_hashes(), recipe.equivalent_hashes(), strict=True)]
        assert all(h in ok for h, ok in zip(stored[path.stem], accepted, strict=True)), path.stem


def test_stage_1_is_shared_by_recipes_that_differ_only_in_their_transitions(tiny):
    """No transition runs before stage 1, so its hash reads the transition settings at their defaults: a twin with
    fewer transition experts, or none, starts from the same stage 1 (benchmarks' start_from); stage 2 differs. A
    folder whose stage 1 was hashed with them (before this rule) is named as the same stage."""
    tiny["method"] = tiny_mtt()
    tiny["stages"] = {"count": 2, "ipc": 1}
    base = load_recipe(tiny).stage_hashes()
    for change in ["method.transition_experts=1", "method.transition_epochs=3", "stages.transition=false"]:
        twin = load_recipe(tiny, [change])
        assert twin.stage_hashes()[0] == base[0] and twin.stage_hashes()[1] != base[1], change
    twin = load_recipe(tiny, ["method.transition_experts=1"])
    before = twin.distill_hash(1, first_alone=False)
    assert before != base[0] and twin.equivalent_hashes() == [{before}, set()]
    assert load_recipe(tiny).equivalent_hashes() == [set(), set()]  # at the defaults both rules agree
    tiny["method"] = {"name": "dsa", "iterations": 2}
    dsa = load_recipe(tiny).stage_hashes()[0]
    assert load_recipe(tiny, ["method.transition_mode=pool", "method.transition_nets=2"]).stage_hashes()[0] == dsa


def test_a_setting_declared_result_neutral_is_left_out_of_the_stage_hash(tiny):
    from hf_condense.core.config import neutral_fields

    tiny["method"] = tiny_mtt()
    base = load_recipe(tiny).stage_hashes()
    assert neutral_fields(Recipe) == {"output", "threads", "tf32"}
    assert neutral_fields(MTTConfig) == {"expert_micro_batch", "expert_compile", "compile_unroll", "experts"}
    for key in ["compute.threads=1", "compute.tf32=true", "output.dir=elsewhere", "compute.expert_micro_batch=3"]:
        assert load_recipe(tiny, [key]).stage_hashes() == base, key
    assert load_recipe(tiny, ["compute.expert_compile=false", "compute.compile_unroll=true"]).stage_hashes() == base
    assert load_recipe(tiny, ["method.syn_steps=5"]).stage_hashes() != base  # an algorithm setting counts


@pytest.mark.heavy
def test_the_result_neutral_settings_change_no_image_beyond_round_off(tiny, accelerator, tmp_path):
    """What the declaration promises, on a run: another thread count and experts trained in micro-batches leave the
    stored images equal up to float round-off (amplified a little by 10 iterations at lr_img 100), far closer than a
    change of seed does (compile_unroll: test_mtt's compiled-unroll test)."""
    import hf_condense

    tiny["method"], tiny["stages"] = tiny_mtt(iterations=10), {"count": 1, "ipc": 2}

    def images(name, *overrides):
        keys = [f"output.dir={tmp_path / name}", f"output.cache_dir={tmp_path / name / 'cache'}", *overrides]
        return hf_condense.run(load_recipe(tiny, keys), accelerator).stages[0].images

    a = images("a")
    b = images("b", "compute.threads=1", "compute.expert_micro_batch=7")  # experts trained again, in micro-batches
    c = images("c", "seed=1")
    neutral, other = (a - b).abs().max() / a.abs().max(), (a - c).abs().max() / a.abs().max()
    assert neutral < 1e-2 and other > 20 * neutral


def test_execution_settings_are_spelled_under_compute_and_earlier_spellings_still_read(tiny, capsys):
    """`compute:` holds how the arithmetic runs; a recipe in the earlier spelling (method.memory,
    evaluation.micro_batch, top-level threads) is the same recipe, with one note per key naming the new one."""
    tiny["method"] = tiny_mtt()
    new = load_recipe({**tiny, "compute": {"memory": "checkpoint", "threads": 1, "eval_micro_batch": 8}})
    assert capsys.readouterr().err == ""
    old = load_recipe(
        {
            **tiny,
            "method": {**tiny["method"], "memory": "checkpoint"},
            "threads": 1,
            "evaluation": {**tiny["evaluation"], "micro_batch": 8},
        }
    )
    assert old.to_dict() == new.to_dict() and old.stage_hashes() == new.stage_hashes()
    assert sorted(capsys.readouterr().err.splitlines()) == [
        "note: evaluation.micro_batch is now compute.eval_micro_batch; read as that",
        "note: method.memory is now compute.memory; read as that",
        "note: threads is now compute.threads; read as that",
    ]
    assert (new.method.memory, new.threads, new.evaluation.micro_batch) == ("checkpoint", 1, 8)
    tiny["method"] = {"name": "dm", "iterations": 5}  # another method's setting, as a shared compute section has it
    load_recipe({**tiny, "compute": {"memory": "checkpoint"}})
    assert capsys.readouterr().err == "note: compute.memory is not a setting of method 'dm'; left aside\n"


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["compute.memory=sometimes"], "compute.memory: 'sometimes' is not allowed; expected one of 'plain'"),
        (["compute.memroy=checkpoint"], "compute.memroy: unknown key (did you mean 'memory'?)"),
        (["compute.memory=checkpoint", "method.memory=plain"], "method.memory: set twice, here and as compute.memory"),
        (["compute.compile_unroll=true", "compute.memory=checkpoint"], "compute.compile_unroll"),
    ],
)
def test_a_bad_compute_setting_is_refused_naming_its_compute_key(tiny, overrides, message):
    from hf_condense.core.config import RecipeError

    tiny["method"] = tiny_mtt()
    with pytest.raises(RecipeError) as e:
        load_recipe(tiny, overrides)
    assert any(line.startswith(message) for line in e.value.errors), e.value.errors
    assert not any(line.startswith("method.compile_unroll") for line in e.value.errors)


def test_a_folders_recipe_is_written_with_compute_and_any_releases_spelling_reads_back_the_same(tiny, capsys):
    from hf_condense.stages.recipe import recipe_reference, recipe_to_yaml

    tiny["method"] = tiny_mtt(memory="checkpoint")
    recipe = load_recipe(tiny)
    written = yaml.safe_load(recipe_to_yaml(recipe))
    assert written["compute"]["memory"] == "checkpoint" and "memory" not in written["method"]
    assert "threads" not in written and "micro_batch" not in written["evaluation"]
    capsys.readouterr()
    assert load_recipe(written).stage_hashes() == recipe.stage_hashes()
    stored_before = yaml.safe_load(yaml.safe_dump(recipe.to_dict()))  # recipe.yaml as earlier releases wrote it
    assert load_recipe(stored_before, notes=False).stage_hashes() == recipe.stage_hashes()
    assert capsys.readouterr().err == ""
    mtt_rows = recipe_reference().split("**`method.name: mtt`**")[1].split("**`method.name:")[0]
    assert "`method.syn_steps`" in mtt_rows and "memory" not in mtt_rows and "micro_batch" not in mtt_rows
