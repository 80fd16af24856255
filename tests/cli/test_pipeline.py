"""End to end on digits: stages in Hub layout that plain `datasets` loads, evaluation, resume, refusals."""

from __future__ import annotations

import json

import datasets
import pytest
import torch
import yaml
from huggingface_hub import DatasetCard

import hf_condense
from hf_condense.core.config import RecipeError
from hf_condense.stages.recipe import load_recipe
from hf_condense.stages.run_folder import list_stages

from ..conftest import ROOT


def run(recipe_dict, accelerator, overrides=()):
    return hf_condense.run(load_recipe(recipe_dict, overrides), accelerator)


@pytest.mark.heavy
def test_folder_loads_per_config_bit_exact(tiny, accelerator, tmp_path):
    tiny["method"] = {"name": "herding", "embed_epochs": 1}
    tiny["stages"] = {"count": 3, "ipc": [1, 2, 1]}
    result = run(tiny, accelerator)
    out = tmp_path / "out"
    assert list_stages(out) == [1, 2, 3]
    for k, syn in enumerate(result.stages, start=1):
        ds = datasets.load_dataset(str(out), f"stage_{k}", split="train")
        x = ds.with_format("torch")["image"][:]
        assert torch.equal(x, syn.images)  # float32 round-trips bit-exactly
        assert ds.features["label"].names == [str(i) for i in range(10)]
        assert ds.features["preview"].__class__.__name__ == "Image"
    default = datasets.load_dataset(str(out), split="train")
    assert len(default) == 10  # the last stage is the default config
    card = DatasetCard.load(out / "README.md")
    assert [c["config_name"] for c in card.data.configs] == ["stage_1", "stage_2", "stage_3"]
    assert card.data.configs[-1].get("default") is True
    meta = json.loads((out / "stage_2" / "stage.json").read_text())
    assert meta["ipc"] == 2 and meta["lr"] == 0.01 and meta["recipe_hash"] == load_recipe(tiny).distill_hash(2)
    assert (out / "preprocessing.safetensors").is_file() and (out / "images" / "stage_1.png").is_file()
    assert yaml.safe_load((out / "recipe.yaml").read_text())["method"]["name"] == "herding"


def test_table_has_scores_and_random_reference(tiny, accelerator):
    tiny["evaluation"]["random_real"] = True
    result = run(tiny, accelerator)
    assert len(result.distilled) == 2 and len(result.random_real) == 2
    assert all(0.1 < m <= 1 for m, _ in result.distilled)
    assert "random real" in result.table()


@pytest.mark.heavy
def test_resume_skips_finished_stages_and_matches_uninterrupted(tiny, accelerator, tmp_path, monkeypatch):
    from hf_condense.methods import coreset

    tiny["evaluation"]["runs"] = 1
    full = run(tiny, accelerator, [f"output.dir={tmp_path / 'full'}"])
    calls = []
    original = coreset.CoresetDistiller.distill

    def crash_at_stage_2(self, task):
        calls.append(task.stage)
        if task.stage == 2:
            raise KeyboardInterrupt("killed")
        return original(self, task)

    monkeypatch.setattr(coreset.CoresetDistiller, "distill", crash_at_stage_2)
    with pytest.raises(KeyboardInterrupt):
        run(tiny, accelerator)
    assert list_stages(tmp_path / "out") == [1]
    monkeypatch.setattr(
        coreset.CoresetDistiller, "distill", lambda self, task: (calls.append(task.stage), original(self, task))[1]
    )
    resumed = run(tiny, accelerator)
    assert calls == [1, 2, 2]  # stage 1 was not redone
    for a, b in zip(full.stages, resumed.stages):
        assert torch.equal(a.images, b.images)


def test_non_empty_foreign_folder_is_refused_and_kept(tiny, accelerator, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("precious")
    with pytest.raises(RecipeError, match="holds no hf_condense run"):
        run(tiny, accelerator)
    assert (tmp_path / "out" / "mine.txt").read_text() == "precious"


def test_cli_reports_bad_recipe_in_one_line(tmp_path, capsys):
    from hf_condense.cli.distill import main

    p = tmp_path / "r.yaml"
    p.write_text("stages:\n  count: 0\n")
    assert main([str(p)]) == 2
    err = capsys.readouterr().err
    assert "stages.count: 0 is too small; must be >= 1" in err


@pytest.mark.slow
def test_quickstart_recipe_beats_random_real_at_every_stage(accelerator, tmp_path):
    """The README's promise for its main command (about a minute): PDD + MTT on digits, every stage above random real
    images of the same budget, the stages loadable in order."""
    recipe = load_recipe(ROOT / "recipes" / "quickstart.yaml", [f"output.dir={tmp_path / 'quickstart'}"])
    result = hf_condense.run(recipe, accelerator)
    assert len(result.distilled) == len(result.random_real) == 3
    for k, ((acc, _), (rand, _)) in enumerate(zip(result.distilled, result.random_real), start=1):
        assert acc > rand + 0.02, f"stage {k}: {acc:.4f} vs random real {rand:.4f}"
    ps = hf_condense.load_progressive(tmp_path / "quickstart")
    assert [s.number for s in ps.stages] == [1, 2, 3]


def test_sparse_label_ids_distil_under_the_source_names(tiny, accelerator, tmp_path, capsys):
    from ..data.test_sources import make_repo

    repo = make_repo(tmp_path / "repo", labels={"train": [1, 3], "test": [1, 2, 3]})
    tiny["dataset"] = {"path": str(repo)}
    tiny["stages"] = {"count": 1, "ipc": 1}
    result = run(tiny, accelerator)
    assert "re-encoded 0..1 (source ids [1, 3]" in capsys.readouterr().out
    ds = datasets.load_dataset(str(tmp_path / "out"), "stage_1", split="train")
    assert ds.features["label"].names == ["b", "d"] and sorted(ds["label"]) == [0, 1]
    run_json = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run_json["label_remap"]["source_ids"] == [1, 3] and run_json["label_remap"]["test_left_out"] > 0
    assert len(result.distilled) == 1
