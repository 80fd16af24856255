"""Hub round trip: per-stage commits through the real huggingface_hub client, the card, the replay loader, evaluate."""

from __future__ import annotations

import json
import os
import uuid
from fnmatch import fnmatch
from pathlib import Path

import datasets
import pytest
import torch
import yaml
from huggingface_hub import DatasetCard

import hf_condense
from hf_condense.cli import evaluate as evaluate_cli
from hf_condense.cli import push as push_cli
from hf_condense.core.config import RecipeError
from hf_condense.data.preprocess import Preprocessor
from hf_condense.methods.base import SynSet
from hf_condense.stages.run_folder import configs_entries, read_stage_meta, stage_name, write_stage

STAGE_FILES = {"stage_{k}/train-00000-of-00001-*.parquet", "stage_{k}/stage.json"}


def matches(files, patterns) -> bool:
    """Every file matches one pattern and every pattern one file."""
    return all(any(fnmatch(f, p) for p in patterns) for f in files) and all(
        any(fnmatch(f, p) for f in files) for p in patterns
    )


TOP = {"README.md", "preprocessing.safetensors", "recipe.yaml", "run.json"}


def pushed(tiny, repo="alice/digits-pdd"):
    tiny["output"].update(push_to_hub=True, repo_id=repo)
    return hf_condense.load_recipe(tiny)


@pytest.mark.heavy
def test_each_stage_is_one_commit_and_the_repo_loads_back(tiny, accelerator, hub, tmp_path):
    result = hf_condense.run(pushed(tiny), accelerator)
    assert [c.message for c in hub.commits] == [
        "Add stage_1",
        "Add stage_2",
        "Add results, figures and the final card",
    ]
    for k, commit in enumerate(hub.commits[:2], start=1):
        assert matches(set(commit.files), TOP | {p.format(k=k) for p in STAGE_FILES})
        assert commit.repo_id == "alice/digits-pdd"
    final = set(hub.commits[2].files)
    assert {"results.json", "accuracy_vs_ipc.png", "images/stage_1.png", "images/stage_2.png", "README.md"} <= final
    assert not any(".checkpoints" in p or ".hf_condense-" in p for c in hub.commits for p in c.files)
    repo = hub.materialise("alice/digits-pdd", tmp_path / "repo")
    for k, syn in enumerate(result.stages, start=1):
        ds = datasets.load_dataset(str(repo), stage_name(k), split="train").with_format("torch")
        assert torch.equal(ds["image"][:], syn.images)
    default = datasets.load_dataset(str(repo), split="train").with_format("torch")
    assert torch.equal(default["image"][:], result.stages[-1].images)  # the last stage is the default config


@pytest.mark.heavy
def test_card_metadata_reads_back_and_names_every_stage(tiny, accelerator, hub, tmp_path):
    tiny["stages"] = {"count": 3, "ipc": 1}
    hf_condense.run(pushed(tiny), accelerator)
    repo = hub.materialise("alice/digits-pdd", tmp_path / "repo")
    card = DatasetCard.load(repo / "README.md")
    assert card.data.license == "cc-by-4.0"
    assert card.data.task_categories == ["image-classification"]
    assert [c["config_name"] for c in card.data.configs] == ["stage_1", "stage_2", "stage_3"]
    assert card.data.configs[-1].get("default") is True
    block = card.data.to_dict()["hf_condense"]
    assert block["method"] == "random" and len(block["stages"]) == 3 and len(block["results"]["distilled"]) == 3
    for k in (1, 2, 3):
        assert f"![stage_{k}](images/stage_{k}.png)" in card.text and (repo / f"images/stage_{k}.png").is_file()
    assert "accuracy_vs_ipc.png" in card.text and (repo / "accuracy_vs_ipc.png").is_file()
    assert 'load_dataset("alice/digits-pdd", "stage_3"' in card.text
    assert "hf_write_token" not in card.content and "hf_write_token" not in (repo / "run.json").read_text()


@pytest.mark.parametrize(
    ("token", "message"),
    [(None, "no Hugging Face token"), ("hf_read_token", "cannot write"), ("hf_bogus", "invalid or expired")],
)
def test_push_without_write_access_is_refused_before_compute(tiny, accelerator, hub, monkeypatch, token, message):
    if token is None:
        monkeypatch.delenv("HF_TOKEN")
        monkeypatch.setenv("HF_HOME", str(os.environ["HF_CONDENSE_CACHE"]))  # no saved token either
    else:
        monkeypatch.setenv("HF_TOKEN", token)
    recipe = pushed(tiny)
    with pytest.raises(RecipeError, match=message):
        hf_condense.run(recipe, accelerator)
    assert not os.path.exists(recipe.output.dir)  # refused before the folder or any stage exists
    assert hub.commits == []


def test_failed_upload_keeps_the_folder_and_the_retry_command_uploads_it(tiny, accelerator, hub, capsys, tmp_path):
    hub.fail_commits = 1
    recipe = pushed(tiny)
    result = hf_condense.run(recipe, accelerator)
    out = capsys.readouterr().out
    retry = f"python -m hf_condense.push {recipe.output.dir} alice/digits-pdd"
    assert retry in out and hub.commits == []  # it stopped pushing after the failure
    assert len(result.stages) == 2 and (result.folder / "results.json").is_file()
    assert push_cli.main([recipe.output.dir, "alice/digits-pdd"]) == 0
    assert len(hub.commits) == 1
    files = set(hub.commits[0].files)
    wanted = {p.format(k=k) for k in (1, 2) for p in STAGE_FILES} | TOP | {"results.json"}
    assert all(any(fnmatch(f, p) for f in files) for p in wanted)
    loaded = hf_condense.load_progressive(hub.materialise("alice/digits-pdd", tmp_path / "repo"))
    assert [s.number for s in loaded.stages] == [1, 2]


def test_push_cli_refuses_a_folder_that_is_not_an_output(tmp_path, hub, capsys):
    assert push_cli.main([str(tmp_path), "alice/x"]) == 2
    assert "expected a folder written by hf_condense.distill" in capsys.readouterr().err


def test_push_cli_refuses_an_altered_stage_and_uploads_nothing(tiny, accelerator, tmp_path, hub, capsys):
    recipe = hf_condense.load_recipe(tiny)
    hf_condense.run(recipe, accelerator)
    (parquet,) = (tmp_path / "out" / "stage_2").glob("train-*.parquet")
    parquet.write_bytes(parquet.read_bytes()[:-1] + b"x")
    assert push_cli.main([recipe.output.dir, "alice/digits-pdd"]) == 3
    assert "do not match the checksum" in capsys.readouterr().err and hub.commits == []


def _write_stages(folder, n):
    """n one-image stages with distinct lrs and epochs, written as hf_condense writes them."""
    pre = Preprocessor.fit(hf_condense.data.PreprocessConfig(), torch.zeros(4, 1, 8, 8, dtype=torch.uint8))
    pre.save(folder / "preprocessing.safetensors")
    for k in range(1, n + 1):
        syn = SynSet(torch.full((2, 1, 8, 8), float(k)), torch.tensor([0, 1]), lr=0.001 * k)
        write_stage(folder, k, syn, {"ipc": 1, "epochs": 10 * k}, ["a", "b"], pre)
    metas = [read_stage_meta(folder / stage_name(k)) for k in range(1, n + 1)]
    card = "---\n" + yaml.safe_dump({"configs": configs_entries(metas)}) + "---\n"
    (folder / "README.md").write_text(card)


def test_load_progressive_replays_unions_in_numeric_order(tmp_path):
    _write_stages(tmp_path, 11)
    ps = hf_condense.load_progressive(tmp_path)
    assert [s.number for s in ps.stages] == list(range(1, 12))  # stage_10 after stage_9, not after stage_1
    sched = ps.schedule()
    assert [s["lr"] for s in sched] == pytest.approx([0.001 * k for k in range(1, 12)])
    assert [s["epochs"] for s in sched] == [10 * k for k in range(1, 12)]
    for k, union in enumerate(ps.unions(), start=1):
        firsts = union.with_format("torch")["image"][:][:, 0, 0, 0]
        assert firsts.tolist() == [float(j) for j in range(1, k + 1) for _ in range(2)]
    assert ps.class_names == ["a", "b"]


def test_load_progressive_refuses_a_gap(tmp_path):
    _write_stages(tmp_path, 3)
    (tmp_path / "stage_2" / "stage.json").rename(tmp_path / "stage.json")
    import shutil

    shutil.rmtree(tmp_path / "stage_2")
    with pytest.raises(ValueError, match=r"stages \[1, 3\] are not 1..2"):
        hf_condense.load_progressive(tmp_path)


@pytest.mark.heavy
def test_evaluate_reproduces_the_recorded_table(tiny, accelerator, capsys, tmp_path):
    tiny["method"] = {"name": "herding", "embed_epochs": 1}
    result = hf_condense.run(hf_condense.load_recipe(tiny), accelerator)
    recorded = json.loads((result.folder / "results.json").read_text())["distilled"]
    ps = hf_condense.load_progressive(result.folder)
    again = evaluate_cli.evaluate_progressive(ps, accelerator=accelerator)["convnet_d2w16"].distilled
    assert [m for m, _ in again] == [m for m, _ in recorded]  # bit for bit at the same thread count
    assert json.loads((result.folder / "results.json").read_text())["threads"] == torch.get_num_threads()
    assert evaluate_cli.main([str(result.folder)]) == 0
    assert "identical to the recorded table" in capsys.readouterr().out
    assert evaluate_cli.main([str(result.folder), "--runs", "2", "--models", "convnet_d1w16"]) == 0
    out = capsys.readouterr().out
    assert "convnet_d1w16" in out and "recorded at distillation" not in out  # another model: nothing to compare
    # bad options are refused in one line before the repo is read
    assert evaluate_cli.main([str(tmp_path / "nowhere"), "--models", "resnt18", "--lr", "-1", "--epochs", "-2"]) == 2
    assert capsys.readouterr().err == (
        "error: --models: 'resnt18' is not a timm model (did you mean 'resnet18'?); see timm.list_models(); "
        "--lr: -1.0 must be a learning rate >= 0; --epochs: -2 must be >= 0\n"
    )
    line = evaluate_cli.reproduction([(0.5, 0.1)], [(0.51, 0.1)], torch.get_num_threads() + 1)
    assert f"rerun with compute.threads={torch.get_num_threads() + 1}" in line
    # --lr replaces every stage's learned lr: at lr 0 nothing trains, so both stages score the untrained network
    frozen = evaluate_cli.evaluate_progressive(ps, accelerator=accelerator, lr=0.0)["convnet_d2w16"].distilled
    assert frozen[0] == frozen[1] and frozen[0][0] < min(m for m, _ in again) - 0.2
    # per-stage epochs: stage 2 given no epochs leaves the progressively carried network as stage 1 left it
    own = ps.schedule()[0]["epochs"]
    held = evaluate_cli.evaluate_progressive(ps, accelerator=accelerator, epochs=[own, 0])["convnet_d2w16"].distilled
    assert held[0] == held[1] == pytest.approx(again[0], abs=0.01)
    assert [s["epochs"] for s in ps.schedule()] == [own, own]  # the loaded stages keep their own schedule
    with pytest.raises(ValueError, match="epochs: got 3 values for 2 stages"):
        evaluate_cli.evaluate_progressive(ps, accelerator=accelerator, epochs=[1, 1, 1])


@pytest.mark.skipif(not os.environ.get("HF_TOKEN"), reason="opt-in: needs HF_TOKEN with write access and network")
def test_real_hub_round_trip(tiny, accelerator, monkeypatch):
    import huggingface_hub.constants
    from huggingface_hub import HfApi

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE")
    user = HfApi().whoami()["name"]
    repo = f"{user}/hf-condense-test-{uuid.uuid4().hex[:8]}"
    try:
        result = hf_condense.run(pushed(tiny, repo), accelerator)
        ps = hf_condense.load_progressive(repo)
        assert torch.equal(ps.stages[-1].synset().images, result.stages[-1].images)
    finally:
        HfApi().delete_repo(repo, repo_type="dataset", missing_ok=True)


def test_evaluate_on_a_path_that_is_nowhere_says_so(tmp_path, capsys):
    assert evaluate_cli.main([str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    want = "neither a local folder nor a Hub dataset id (namespace/name): no such folder here"
    assert err.strip() == f"error: {tmp_path / 'missing'}: {want}"


def test_source_license_of_a_mapped_hub_id_reads_the_local_copy(tmp_path, monkeypatch):
    """A Hub id mapped by HF_CONDENSE_DATASETS takes its license from the local copy's card, with no Hub request (an
    offline machine otherwise waits through the Hub client's retries)."""
    from hf_condense.hub import card as card_module

    (tmp_path / "cifar10").mkdir()
    (tmp_path / "cifar10" / "README.md").write_text("---\nlicense: mit\n---\n# a copy\n")
    monkeypatch.setenv("HF_CONDENSE_DATASETS", str(tmp_path))
    real_load = card_module.DatasetCard.load

    def local_only(path, *args, **kwargs):
        assert Path(path).is_file(), f"asked the Hub for {path}"
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(card_module.DatasetCard, "load", local_only)
    card_module.source_license.cache_clear()
    assert card_module.source_license("someone/cifar10") == "mit"
    card_module.source_license.cache_clear()
