"""Cached artefacts (experts, ZCA fits, forgetting scores) carry a content key and a checksum: a truncated, altered,
stale or foreign file is reported (which file, why) and rebuilt, never used."""

from __future__ import annotations

import shutil

import pytest
import torch

import hf_condense
from hf_condense.core.io import load_verified, save_verified
from hf_condense.data.preprocess import PreprocessConfig, Preprocessor


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip_last_byte(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage,why",
    [
        (_truncate, "is unreadable"),
        (_flip_last_byte, "checksum does not match"),
        (lambda p: save_verified({"x": torch.ones(3)}, p, "another-key"), "made for other settings"),
    ],
)
def test_damaged_cache_file_is_refused_with_file_and_reason(tmp_path, caplog, damage, why):
    path = tmp_path / "c.safetensors"
    save_verified({"x": torch.arange(1000.0)}, path, "k")
    assert torch.equal(load_verified(path, "k", "test")[0]["x"], torch.arange(1000.0))
    damage(path)
    with caplog.at_level("WARNING"):
        assert load_verified(path, "k", "test") is None
    assert str(path) in caplog.text and why in caplog.text


def test_zca_fit_is_cached_and_a_corrupt_fit_is_refit(tmp_path, digits, monkeypatch, caplog):
    cfg = PreprocessConfig(zca=True)
    first = Preprocessor.fit_cached(cfg, digits.train_x, "key", tmp_path)
    (path,) = (tmp_path / "zca").glob("*.safetensors")
    fits = []
    original = Preprocessor.fit
    monkeypatch.setattr(Preprocessor, "fit", classmethod(lambda cls, *a: fits.append(1) or original(*a)))
    again = Preprocessor.fit_cached(cfg, digits.train_x, "key", tmp_path)
    assert fits == [] and torch.equal(again.zca["transform_matrix"], first.zca["transform_matrix"])
    _flip_last_byte(path)
    with caplog.at_level("WARNING"):
        refit = Preprocessor.fit_cached(cfg, digits.train_x, "key", tmp_path)
    assert fits == [1] and "ZCA cache file" in caplog.text and str(path) in caplog.text
    assert torch.allclose(refit.zca["transform_matrix"], first.zca["transform_matrix"])


def test_forgetting_scores_are_cached_and_a_damaged_file_is_recounted(tiny, accelerator, caplog):
    from hf_condense.data.sources import load_real_data
    from hf_condense.methods.forgetting import forgetting_scores
    from hf_condense.stages.engine import make_context

    recipe = hf_condense.load_recipe(tiny)
    ctx = make_context(recipe, accelerator, load_real_data(recipe.dataset))
    scores = forgetting_scores(ctx, 2, recipe.seed)
    (path,) = (ctx.cache_dir / "forgetting").glob("*.safetensors")
    stamp = path.stat().st_mtime_ns
    assert torch.equal(forgetting_scores(ctx, 2, recipe.seed), scores) and path.stat().st_mtime_ns == stamp  # reused
    shutil.copy(path, path.with_suffix(".bak"))
    _truncate(path)
    with caplog.at_level("WARNING"):
        assert torch.equal(forgetting_scores(ctx, 2, recipe.seed), scores)  # recounted, same seed
    assert "forgetting-score cache file" in caplog.text and "unreadable" in caplog.text
