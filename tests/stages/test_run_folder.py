"""The run folder: the one owner of an output folder's names, its start, its lock and its recovery."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import hf_condense
from hf_condense.core.io import TMP_PREFIX
from hf_condense.methods import DivergenceError
from hf_condense.stages.run_folder import FolderLockedError, RunFolder

from ..conftest import tiny_mtt


def test_a_second_process_on_the_same_folder_is_refused(tmp_path):
    first, second = RunFolder(tmp_path / "out"), RunFolder(tmp_path / "out")
    (tmp_path / "out").mkdir()
    first.lock()
    with pytest.raises(FolderLockedError, match="being written by another process"):
        second.lock()
    first.unlock()
    second.lock()  # free again once the first lets go
    second.unlock()


@pytest.mark.heavy
def test_recovery_touches_only_its_own_temporary_names(tiny, accelerator, tmp_path):
    out = tmp_path / "out"
    hf_condense.run(hf_condense.load_recipe(tiny), accelerator)
    mine, theirs, old = out / f"{TMP_PREFIX}stage_2.x", out / ".notes.tmp", out / ".draft.old"
    mine.mkdir()
    theirs.mkdir()
    old.write_text("a user's file")
    hf_condense.run(hf_condense.load_recipe(tiny), accelerator)  # resumes: every stage is there
    assert not mine.exists() and theirs.is_dir() and old.read_text() == "a user's file"


def test_a_folder_killed_after_its_first_file_resumes(tiny, accelerator, tmp_path):
    """run.json is written first: a folder that holds only it is a run, and the same command completes it."""
    recipe = hf_condense.load_recipe(tiny)
    folder = RunFolder(recipe.output.dir)
    folder.path.mkdir(parents=True)
    folder.run_json.write_text(json.dumps({"stage_hashes": recipe.stage_hashes()}))
    assert folder.check(recipe.stage_hashes()) == []
    result = hf_condense.run(recipe, accelerator)
    assert folder.recipe.is_file() and folder.preprocessing.is_file() and len(result.stages) == 2


@pytest.mark.heavy
def test_an_unfinished_stage_does_not_block_a_rerun_with_other_settings(tiny, accelerator, capsys):
    tiny["method"] = tiny_mtt(iterations=20, lr_lr=10.0, checkpoint_every=5)  # alpha leaves its range: diverges
    tiny["stages"] = {"count": 1, "ipc": 1}
    with pytest.raises(DivergenceError):
        hf_condense.run(hf_condense.load_recipe(tiny), accelerator)
    tiny["method"]["lr_lr"] = 1e-7  # the advised rerun with a lower lr, in the same folder
    result = hf_condense.run(hf_condense.load_recipe(tiny), accelerator)
    assert len(result.stages) == 1
    assert "never finished under other settings" in capsys.readouterr().out


@pytest.mark.heavy
def test_load_dataset_returns_the_folders_own_stage(tiny, accelerator, tmp_path):
    """Two folders of one base name, then one rewritten in place: `datasets`' cache key of a stage config follows
    the stage's contents (its parquet is named by its checksum), so each load returns that folder's images."""
    import datasets

    def run_into(path, seed):
        tiny["output"] = {"dir": str(path)}
        tiny["seed"] = seed
        return hf_condense.run(hf_condense.load_recipe(tiny), accelerator).stages[0].images

    def loaded(path):
        ds = datasets.load_dataset(str(path), "stage_1", split="train", cache_dir=str(tmp_path / "hf_cache"))
        return ds.with_format("torch")["image"][:]

    a, b = tmp_path / "a" / "out", tmp_path / "b" / "out"
    images_a, images_b = run_into(a, 0), run_into(b, 1)
    assert not torch.equal(images_a, images_b)
    assert torch.equal(loaded(a), images_a) and torch.equal(loaded(b), images_b)
    shutil.rmtree(a)
    images_a2 = run_into(a, 2)  # the same folder, rewritten with other images
    assert torch.equal(loaded(a), images_a2)
