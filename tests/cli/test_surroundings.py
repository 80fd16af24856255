"""Faults around the run folder (caches the library does not own, models, paths of the wrong kind, the network, data
that does not fit the stages): each ends in one line and an exit code, or a recovery it states, before compute."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import hf_condense
from hf_condense.cli import distill as distill_cli
from hf_condense.cli import evaluate as evaluate_cli
from hf_condense.cli import push as push_cli
from hf_condense.core.config import RecipeError
from hf_condense.data.sources import DatasetConfig, load_real_data, load_source, local_cache_dir

from ..hub.test_hub import _write_stages


def image_folder(root: Path, mode: str = "RGB", classes=("c0", "c1"), size: int = 8) -> Path:
    """A dataset folder laid out as `datasets`' imagefolder reads it: train/ and test/, one folder per class."""
    rng = np.random.default_rng(0)
    shape = (size, size, 3) if mode == "RGB" else (size, size)
    for split in ("train", "test"):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(4):
                Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode).save(root / split / c / f"{i}.png")
    return root


def test_a_damaged_datasets_cache_of_a_local_folder_is_rebuilt_and_said(tmp_path, caplog):
    folder = image_folder(tmp_path / "ds")
    cfg = DatasetConfig(path=str(folder))
    rows = load_source(cfg)["train"].num_rows
    arrows = list(Path(local_cache_dir(folder)).rglob("*.arrow"))
    for arrow in arrows:  # half-written, as a killed `datasets` build leaves it
        arrow.write_bytes(arrow.read_bytes()[: arrow.stat().st_size // 2])
    with caplog.at_level(logging.WARNING, logger="hf_condense.data"):
        assert load_source(cfg)["train"].num_rows == rows
    assert arrows and f"the datasets cache of {folder} was damaged" in caplog.text and "rebuilding" in caplog.text


def test_a_damaged_datasets_cache_of_a_hub_id_names_the_folder_to_delete(monkeypatch):
    import datasets
    import pyarrow

    def damaged(*args, **kwargs):
        raise pyarrow.ArrowInvalid("Expected to read 296 metadata bytes, but only read 192")

    monkeypatch.setattr(datasets, "load_dataset", damaged)
    with pytest.raises(RecipeError) as info:
        load_source(DatasetConfig(path="uoft-cs/cifar10"))
    (line,) = info.value.errors
    assert line.startswith("dataset.path: the datasets cache of 'uoft-cs/cifar10' is damaged")
    assert "uoft-cs___cifar10 and rerun" in line


@pytest.mark.parametrize(
    ("where", "key", "message"),
    [
        ("recipe:file", "output.cache_dir", "is a file; give a folder path"),
        ("recipe:file/sub", "output.cache_dir", "cannot be made:"),
        ("env:file/sub", "HF_CONDENSE_CACHE", "cannot be made:"),
        ("recipe:/proc/cache", "output.cache_dir", "cannot be"),
    ],
)
def test_a_cache_folder_that_cannot_be_written_is_refused_before_the_data(
    tiny, tmp_path, monkeypatch, where, key, message
):
    source, path = where.split(":")
    (tmp_path / "file").write_text("mine")
    path = path if path.startswith("/") else str(tmp_path / path)
    if source == "env":
        monkeypatch.setenv("HF_CONDENSE_CACHE", path)
    else:
        tiny["output"]["cache_dir"] = path
    with pytest.raises(RecipeError) as info:
        hf_condense.load_recipe(tiny)  # the recipe check: no data read, nothing computed
    (line,) = info.value.errors
    assert line.startswith(f"{key}: {path!r}") and message in line
    assert (tmp_path / "file").read_text() == "mine"


def test_paths_of_the_wrong_kind_say_what_they_are(tiny, tmp_path, capsys):
    folder, file = tmp_path / "folder", tmp_path / "file"
    folder.mkdir()
    file.write_text("mine")
    assert distill_cli.main([str(folder)]) == 2
    assert f"{folder}: is a folder; expected a recipe YAML file" in capsys.readouterr().err
    assert push_cli.main([str(file), "alice/x"]) == 2
    assert capsys.readouterr().err == f"error: {file}: is a file; expected a folder written by hf_condense.distill\n"
    assert evaluate_cli.main([str(file)]) == 2
    assert capsys.readouterr().err == (
        f"error: {file}: is a file; expected a folder made by hf_condense, or a Hub dataset id\n"
    )
    with pytest.raises(RecipeError, match=f"dataset.path: {file}: is a file; expected a dataset folder"):
        load_real_data(DatasetConfig(path=str(file)))
    assert file.read_text() == "mine"


@pytest.fixture
def unreachable_hub(monkeypatch):
    """A Hub endpoint nothing listens on (the connection is refused at once), with a token set."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", "hf_write_token")
    return "http://127.0.0.1:9"


def test_an_unreachable_hub_is_named_with_the_command_to_retry(tiny, tmp_path, unreachable_hub, capsys):
    run = tmp_path / "run"
    run.mkdir()
    _write_stages(run, 2)
    assert push_cli.main([str(run), "alice/x"]) == 1  # an upload failure's exit code, not bad input's
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: cannot reach the Hub at {unreachable_hub} to check write access to 'alice/x'")
    assert line.endswith(f"retry: hf-condense push {run} alice/x")
    assert evaluate_cli.main(["alice/x"]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: cannot reach the Hub at {unreachable_hub} to download the dataset repo 'alice/x'")
    tiny["output"].update(push_to_hub=True, repo_id="alice/x")
    with pytest.raises(hf_condense.HubUnreachable, match="then rerun the same command"):
        hf_condense.run(hf_condense.load_recipe(tiny))
    assert not Path(tiny["output"]["dir"]).exists()  # refused before the folder or any stage exists


@pytest.fixture(scope="module")
def herding_run(tmp_path_factory):
    from accelerate import Accelerator

    from ..conftest import TINY

    out = tmp_path_factory.mktemp("herding")
    recipe = {**TINY, "method": {"name": "herding", "embed_epochs": 1}, "output": {"dir": str(out / "run")}}
    return hf_condense.run(hf_condense.load_recipe(recipe), Accelerator(cpu=True)).folder


@pytest.mark.parametrize(
    ("mode", "classes", "message"),
    [
        ("RGB", [str(c) for c in range(10)], "has (3, 8, 8) images (channels, height, width); the stages of"),
        ("L", ["c0", "c1"], "has classes [c0, c1] (2); the stages of"),
    ],
)
def test_real_data_that_does_not_fit_the_stages_is_refused_before_training(
    herding_run, tmp_path, capsys, mode, classes, message
):
    data = image_folder(tmp_path / "other", mode, classes)
    assert evaluate_cli.main([str(herding_run), "--dataset", str(data)]) == 2
    err = capsys.readouterr().err  # besides datasets' progress bars of the new folder: one line, no traceback
    (line,) = [line for line in err.splitlines() if line.startswith("error")]
    assert line.startswith(f"error: dataset.path: {str(data)!r} {message} {herding_run} h") and "Traceback" not in err


def test_a_stages_preprocessor_refuses_images_it_was_not_fitted_on(herding_run):
    pre = hf_condense.load_progressive(herding_run).preprocessor
    assert pre(np.zeros((2, 1, 8, 8), dtype=np.uint8)).shape == (2, 1, 8, 8)
    with pytest.raises(ValueError, match=r"images of shape \(3, 8, 8\) .* fitted on 1-channel images"):
        pre(np.zeros((2, 3, 8, 8), dtype=np.uint8))
