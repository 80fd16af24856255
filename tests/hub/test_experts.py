"""Expert trajectories on the Hub: pushed once through the real huggingface_hub client (the in-memory Hub), reused by
a fresh cache to the same stage, and every incompatible, damaged or incomplete case refused or completed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

import hf_condense
from hf_condense.cli import experts as experts_cli
from hf_condense.core.config import RecipeError

from ..conftest import tiny_mtt

REPO = "alice/digits-experts"


def experts_recipe(tiny, tmp_path, name="out", **method) -> Path:
    """A one-stage tiny MTT recipe written to a file (the CLI takes a path), its output under tmp_path/name."""
    tiny["method"] = tiny_mtt(iterations=4, **method)
    tiny["stages"] = {"count": 1, "ipc": 1}
    tiny["evaluation"] = {"runs": 1, "epochs": 2, "random_real": False}
    tiny["output"] = {"dir": str(tmp_path / name)}
    tiny["compute"] = {"threads": 1}  # byte-identical stages need the same arithmetic in every run
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(tiny))
    return path


@pytest.fixture
def pushed(tiny, tmp_path, hub, monkeypatch):
    """The tiny recipe's 2 experts pushed to REPO; returns the recipe path (the pushing cache stays in place)."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))  # this test's own
    recipe = experts_recipe(tiny, tmp_path, "local")
    assert experts_cli.main(["push", str(recipe), REPO]) == 0
    return recipe


@pytest.mark.heavy
def test_shared_experts_distil_the_same_stage_as_local_ones(pushed, hub, tmp_path, monkeypatch, capsys):
    (commit,) = hub.commits
    info = json.loads(commit.files["experts.json"])
    assert commit.repo_id == REPO and sorted(commit.files) == [  # 4 snapshots an expert: one shard each
        "README.md",
        "experts.json",
        "experts/expert_0000/snapshots_0000-0003.safetensors",
        "experts/expert_0001/snapshots_0000-0003.safetensors",
    ]
    assert info["format"] == "hf_condense.experts.v1" and info["epochs"] == 3 and len(info["experts"]) == 2
    assert "method:\n  experts: alice/digits-experts" in commit.files["README.md"].decode()
    local = hf_condense.run(hf_condense.load_recipe(pushed))  # experts from the pushing cache

    monkeypatch.setenv("HF_CONDENSE_CACHE", str(tmp_path / "fresh_cache"))
    capsys.readouterr()
    shared = hf_condense.run(
        hf_condense.load_recipe(pushed, [f"method.experts={REPO}", f"output.dir={tmp_path / 's'}"])
    )
    out = capsys.readouterr().out
    assert f"experts: 2 of 2 from {REPO} via the Hub (verified)" in out
    assert "expert(s) x 3 epoch(s)" not in out  # nothing trained here
    assert torch.equal(local.stages[0].images, shared.stages[0].images)
    card = (tmp_path / "s" / "README.md").read_text()
    assert f"[{REPO}](https://huggingface.co/{REPO})" in card


@pytest.mark.heavy
def test_a_repo_for_other_settings_or_a_damaged_file_is_refused_and_missing_experts_are_built(
    pushed, hub, tmp_path, monkeypatch, capsys
):
    folder = hub.materialise(REPO, tmp_path / "copy")
    monkeypatch.setenv("HF_CONDENSE_CACHE", str(tmp_path / "fresh_cache"))

    def run(*overrides):
        return hf_condense.run(hf_condense.load_recipe(pushed, [f"output.dir={tmp_path / 'r'}", *overrides]))

    with pytest.raises(RecipeError, match=r"holds experts made with other settings: lr \(repo: 0.01, recipe: 0.02\)"):
        run(f"method.experts={folder}", "method.expert_lr=0.02")
    with pytest.raises(RecipeError, match=r"holds experts made with other settings: data\.preprocess\.zca"):
        run(f"method.experts={folder}", "preprocess.zca=true")
    damaged = folder / "experts" / "expert_0001" / "snapshots_0000-0003.safetensors"
    damaged.write_bytes(damaged.read_bytes()[:-1] + b"x")
    with pytest.raises(RecipeError, match=r"experts/expert_0001/snapshots_0000-0003.safetensors of .* does not match"):
        run(f"method.experts={folder}")
    assert not list((tmp_path / "fresh_cache").glob("experts/*/expert_0001.safetensors"))  # never used
    hub.materialise(REPO, tmp_path / "copy")  # repaired
    capsys.readouterr()
    run(f"method.experts={folder}", "method.num_experts=3")  # one more than the repo holds
    assert "experts: 2 of 3 from" in capsys.readouterr().out
    assert len(list((tmp_path / "fresh_cache").glob("experts/*/expert_000*.safetensors"))) == 3


@pytest.mark.heavy
@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda f: (f / "experts.json").unlink(), "has no experts.json"),
        (lambda f: (f / "experts.json").write_text("{"), "experts.json of .* is malformed"),
        (lambda f: (f / "experts.json").write_text('{"format": "v0"}'), "is format 'v0'; this hf_condense reads"),
        (
            lambda f: (f / "experts.json").write_text(
                (f / "experts.json").read_text().replace('"shards"', '"pieces"')
            ),
            r"is malformed \(no shards",
        ),
    ],
    ids=["missing", "malformed", "format", "no-shards"],
)
def test_a_bad_manifest_is_refused_in_one_line(pushed, hub, tmp_path, monkeypatch, capsys, damage, message):
    folder = hub.materialise(REPO, tmp_path / "copy")
    damage(folder)
    recipe = str(pushed)
    from hf_condense.cli import distill

    assert distill.main([recipe, f"method.experts={folder}", f"output.dir={tmp_path / 'r'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[1].lstrip(" -").startswith("method.experts:")
    import re

    assert re.search(message, err[1])


@pytest.mark.heavy
def test_offline_use_through_the_local_mapping_and_unknown_repos(pushed, hub, tmp_path, monkeypatch, capsys):
    hub.materialise(REPO, tmp_path / "copies" / "digits-experts")
    monkeypatch.setenv("HF_CONDENSE_EXPERTS", str(tmp_path / "copies"))
    monkeypatch.setenv("HF_CONDENSE_CACHE", str(tmp_path / "fresh_cache"))
    capsys.readouterr()
    hf_condense.run(hf_condense.load_recipe(pushed, [f"method.experts={REPO}", f"output.dir={tmp_path / 'r'}"]))
    assert "via the local folder" in capsys.readouterr().out
    monkeypatch.delenv("HF_CONDENSE_EXPERTS")
    with pytest.raises(RecipeError, match="no model repo 'alice/nothing-here' on the Hub"):
        hf_condense.run(hf_condense.load_recipe(pushed, ["method.experts=alice/nothing-here"]))


def test_a_failed_push_keeps_the_cache_and_prints_the_retry(tiny, tmp_path, hub, capsys):
    hub.fail_commits = 1
    recipe = experts_recipe(tiny, tmp_path)
    assert experts_cli.main(["push", str(recipe), REPO]) == 1
    err = capsys.readouterr().err
    assert f"retry: hf-condense experts push {recipe} {REPO}" in err and hub.commits == []
    assert len(list((tmp_path / "cache").glob("experts/*/expert_*.safetensors"))) == 2  # the built experts stay
    assert experts_cli.main(["push", str(recipe), REPO]) == 0 and len(hub.commits) == 1


def test_push_without_write_access_is_refused_before_training(tiny, tmp_path, hub, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", "hf_read_token")
    assert experts_cli.main(["push", str(experts_recipe(tiny, tmp_path)), REPO]) == 2
    assert "cannot write to 'alice'" in capsys.readouterr().err
    assert not list((tmp_path / "cache").glob("experts/*"))


@pytest.mark.heavy
def test_experts_written_to_a_local_folder_serve_a_fresh_cache(tiny, tmp_path, monkeypatch, capsys):
    """--folder: the repo layout on disk (offline sharing, mirrors); the second recipe builds no experts."""
    recipe, folder = experts_recipe(tiny, tmp_path), tmp_path / "shared"
    assert experts_cli.main(["push", str(recipe), str(folder), "--folder", "seed=0"]) == 0  # flags anywhere
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "experts", "experts.json"]
    assert experts_cli.main(["push", str(recipe), str(folder), "--folder"]) == 2  # never written over
    assert "holds files already" in capsys.readouterr().err
    monkeypatch.setenv("HF_CONDENSE_CACHE", str(tmp_path / "fresh_cache"))
    hf_condense.run(hf_condense.load_recipe(recipe, [f"method.experts={folder}", f"output.dir={tmp_path / 'r'}"]))
    out = capsys.readouterr().out
    assert f"experts: 2 of 2 from {folder} via the local folder" in out and "expert(s) x 3 epoch(s)" not in out
    assert f"experts: {folder}" in (tmp_path / "r" / "recipe.yaml").read_text()  # the run's recipe names it
    card = (tmp_path / "r" / "README.md").read_text()
    assert "came from `shared`" in card and str(tmp_path) not in card  # published: the folder's name only


@pytest.mark.heavy
def test_a_run_downloads_only_the_epochs_it_uses(tiny, tmp_path, hub, monkeypatch, capsys):
    """Experts pushed with 16 snapshots (two files each); a recipe that matches the first 4 fetches the first files
    only; one that needs more epochs than the repo stores builds its experts here and says so."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    long = experts_recipe(tiny, tmp_path, "long", expert_extra_epochs=12)
    assert experts_cli.main(["push", str(long), REPO]) == 0
    monkeypatch.setenv("HF_CONDENSE_CACHE", str(tmp_path / "fresh_cache"))
    short = experts_recipe(tiny, tmp_path, "short")
    hf_condense.run(hf_condense.load_recipe(short, [f"method.experts={REPO}"]))
    fetched = {
        path.rsplit("/", 2)[-2] + "/" + path.rsplit("/", 1)[-1] for method, path in hub.requests if method == "GET"
    }
    assert "expert_0000/snapshots_0000-0009.safetensors" in fetched
    assert not any("snapshots_0010" in f for f in fetched)
    capsys.readouterr()
    more = [f"method.experts={REPO}", "method.expert_extra_epochs=20", f"output.dir={tmp_path / 'more'}"]
    hf_condense.run(hf_condense.load_recipe(short, more))
    assert (
        "stores 15 epoch(s) per expert; this recipe needs 23: all 2 expert(s) are built here"
        in capsys.readouterr().out
    )


@pytest.mark.heavy
def test_an_interrupted_download_fails_in_one_line_and_the_rerun_completes(pushed, hub, tmp_path, monkeypatch):
    """The connection drops while the second expert downloads: exit 1 with the way to resume, no half file in the
    cache; the same command then completes, to the stage the local experts make."""
    from hf_condense.cli import distill

    local = hf_condense.run(hf_condense.load_recipe(pushed))
    monkeypatch.setenv("HF_CONDENSE_CACHE", str(tmp_path / "fresh_cache"))
    hub.fail_downloads["experts/expert_0001/snapshots_0000-0003.safetensors"] = 3  # more than the client's retries
    argv = [str(pushed), f"method.experts={REPO}", f"output.dir={tmp_path / 's'}"]
    assert distill.main(argv) == 1
    placed = sorted(p.name for p in (tmp_path / "fresh_cache").glob("experts/*/*"))
    assert placed == ["expert_0000.safetensors"]  # the verified one only
    hub.fail_downloads.clear()
    assert distill.main(argv) == 0
    from hf_condense.stages.run_folder import read_stage

    assert torch.equal(read_stage(tmp_path / "s" / "stage_1").images, local.stages[0].images)
