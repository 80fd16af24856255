"""The dataset card: Hub metadata that `datasets` and the Hub read, DD-Ranking and cross-architecture tables, and no
local path in anything uploaded."""

from __future__ import annotations

import json

import datasets
import pytest
from huggingface_hub import DatasetCard, DatasetCardData

import hf_condense
from hf_condense.hub.card import source_reference

from ..data.test_sources import make_repo


def test_stage_configs_declare_features_and_splits(tiny, accelerator, tmp_path):
    tiny["stages"] = {"count": 2, "ipc": 1}
    hf_condense.run(hf_condense.load_recipe(tiny), accelerator)
    for k in (1, 2):
        info = datasets.load_dataset_builder(str(tmp_path / "out"), f"stage_{k}").info
        assert info.features is not None and info.features["label"].names == [str(i) for i in range(10)]
        assert info.splits["train"].num_examples == 10
    data = DatasetCard.load(tmp_path / "out" / "README.md").data
    assert data.task_ids == ["multi-class-image-classification"]
    assert data.annotations_creators == ["machine-generated"]
    assert data.source_datasets is None  # the bundled digits are not a Hub dataset
    DatasetCardData(**data.to_dict())  # the metadata round-trips through huggingface_hub's own card data


@pytest.mark.heavy
def test_scores_and_other_architectures_in_table_results_and_card(tiny, accelerator, tmp_path, capsys):
    tiny["evaluation"].update(
        {"runs": 2, "epochs": 20, "random_real": True, "whole_data": True, "whole_data_epochs": 2}
    )
    tiny["evaluation"]["models"] = ["convnet_d1w16"]
    result = hf_condense.run(hf_condense.load_recipe(tiny), accelerator)
    out = capsys.readouterr().out
    assert "IOR" in out and "LRS" in out and "convnet_d1w16 (%, IOR)" in out
    assert "evaluation distilled convnet_d1w16: done in" in out
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    (acc, _), (rand, _) = results["distilled"][0], results["random_real"][0]
    score = results["scores"][0]
    assert abs(score["ior"] - (acc - rand)) < 1e-12
    assert abs(score["hlr"] - (results["whole_data"][0] - acc)) < 1e-12 and 0 <= score["lrs"] <= 1
    other = results["models"]["convnet_d1w16"]
    assert len(other["distilled"]) == len(other["random_real"]) == len(other["ior"]) == len(result.stages)
    card = (tmp_path / "out" / "README.md").read_text()
    assert "| IOR | HLR | LRS | convnet_d1w16 (%, IOR) |" in card


def test_nothing_uploaded_holds_a_local_path(tiny, accelerator, hub, tmp_path):
    repo = make_repo(tmp_path / "my_local_data")
    tiny["dataset"] = {"path": str(repo)}
    tiny["stages"] = {"count": 1, "ipc": 1}
    tiny["output"].update(push_to_hub=True, repo_id="alice/local-pdd", cache_dir=str(tmp_path / "cache"))
    hf_condense.run(hf_condense.load_recipe(tiny), accelerator)
    files = {name: body for c in hub.commits for name, body in c.files.items()}
    for name in ("README.md", "recipe.yaml", "run.json", "results.json", "stage_1/stage.json"):
        assert str(tmp_path).encode() not in files[name], name
    card = DatasetCard(files["README.md"].decode())
    assert card.data.source_datasets is None and "my_local_data" in card.text
    assert "github.com" not in card.text and "huggingface.co/datasets/" not in card.text
    assert (tmp_path / "out" / "recipe.yaml").read_text().count(str(repo)) == 1  # the local copy still resumes


def test_source_reference_links_only_hub_ids():
    assert source_reference("uoft-cs/cifar10") == (
        "uoft-cs/cifar10",
        "https://huggingface.co/datasets/uoft-cs/cifar10",
        ["uoft-cs/cifar10"],
    )
    assert source_reference("sklearn/digits")[1:] == (None, None)
