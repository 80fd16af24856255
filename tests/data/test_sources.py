"""Real data: any datasets source into tensors through one path; clear errors for bad columns and splits."""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import pytest
import torch

from hf_condense.core.config import RecipeError
from hf_condense.data.preprocess import PreprocessConfig, Preprocessor
from hf_condense.data.sources import DatasetConfig, load_real_data

from ..conftest import FASHION


def make_repo(
    tmp_path, n=40, mixed=False, size=8, label_name="label", image_name="img", drop=None, test_label=None, labels=None
):
    """A local folder laid out like a Hub dataset repo (parquet under data/, README with configs); `drop` leaves a
    column out, `test_label` gives every test example that label (-1: missing), `labels` maps a split to the label
    ids its examples cycle through, from the names a, b, c, d (default: 0, 1 in both)."""
    rng = np.random.default_rng(0)
    feats = {
        image_name: datasets.Image(),
        label_name: datasets.ClassLabel(names=["a", "b"] if labels is None else ["a", "b", "c", "d"]),
        "note": datasets.Value("string"),
    }
    feats = datasets.Features({k: v for k, v in feats.items() if k != drop})
    for split in ("train", "test"):
        imgs = [rng.integers(0, 255, (size, size, 3), dtype=np.uint8) for _ in range(n)]
        if mixed:
            imgs[0] = imgs[0][..., 0]
        ids = (labels or {}).get(split, [0, 1])
        ys = [test_label if split == "test" and test_label is not None else ids[i % len(ids)] for i in range(n)]
        cols = {image_name: imgs, label_name: ys, "note": ["x"] * n}
        ds = datasets.Dataset.from_dict({k: v for k, v in cols.items() if k != drop}, features=feats)
        (tmp_path / "data").mkdir(parents=True, exist_ok=True)
        ds.to_parquet(str(tmp_path / "data" / f"{split}-00000-of-00001.parquet"))
    (tmp_path / "README.md").write_text(
        "---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n    path: data/train-*\n"
        "  - split: test\n    path: data/test-*\n---\n"
    )
    return tmp_path


def test_digits_offline_source(digits):
    assert digits.train_x.dtype == torch.uint8 and digits.train_x.shape[1:] == (1, 8, 8)
    assert len(digits.train_x) + len(digits.test_x) == 1797 and digits.num_classes == 10
    assert sum(len(i) for i in digits.class_indices()) == len(digits.train_y)


def test_local_hub_layout_folder_autodetects_columns(tmp_path):
    data = load_real_data(DatasetConfig(path=str(make_repo(tmp_path))))
    assert data.train_x.shape == (40, 3, 8, 8) and data.class_names == ["a", "b"]
    assert data.source["image_column"] == "img" and data.source["label_column"] == "label"


def test_mixed_grayscale_and_rgb_images_become_rgb(tmp_path):
    data = load_real_data(DatasetConfig(path=str(make_repo(tmp_path, mixed=True))))
    assert data.train_x.shape == (40, 3, 8, 8)


def test_missing_column_named(tmp_path):
    with pytest.raises(RecipeError, match="dataset.image_column: column 'image' is not in the dataset; columns: img"):
        load_real_data(DatasetConfig(path=str(make_repo(tmp_path)), image_column="image"))


def test_label_ids_without_train_examples_are_re_encoded_and_recorded(tmp_path):
    repo = make_repo(tmp_path, labels={"train": [1, 3], "test": [1, 2, 3, 3]})
    data = load_real_data(DatasetConfig(path=str(repo)))
    assert data.class_names == ["b", "d"] and data.train_y.unique().tolist() == [0, 1]
    assert data.test_y.tolist() == [0, 1, 1] * 10 and len(data.test_x) == 30
    assert data.source["label_remap"] == {"source_ids": [1, 3], "names": ["b", "d"], "test_left_out": 10}


def test_contiguous_labels_are_kept_as_they_are(tmp_path):
    data = load_real_data(DatasetConfig(path=str(make_repo(tmp_path))))
    assert "label_remap" not in data.source and data.class_names == ["a", "b"]


def test_one_class_is_refused(tmp_path, tiny):
    from hf_condense.stages.recipe import data_errors, load_recipe

    data = load_real_data(DatasetConfig(path=str(make_repo(tmp_path, labels={"train": [2], "test": [2]}))))
    (err,) = data_errors(load_recipe(tiny), data)
    assert err == "dataset.label_column: split 'train' has 1 class(es) with examples; distillation needs at least two"


def test_ipc_above_smallest_class_refused(tiny):
    from hf_condense.stages.recipe import data_errors, load_recipe

    tiny["stages"] = {"count": 2, "ipc": 100}
    data = load_real_data(DatasetConfig(path="sklearn/digits"))
    (err,) = data_errors(load_recipe(tiny), data)
    assert err.startswith("stages.ipc: 2 stage(s) x [100, 100] = 200 images per class, but the smallest class")


@pytest.mark.heavy
@pytest.mark.skipif(not FASHION.is_dir(), reason="../shared/datasets/fashion_mnist not present")
def test_fashion_mnist_loads_through_the_hub_path():
    data = load_real_data(DatasetConfig(path=str(FASHION)))
    assert data.train_x.shape == (60000, 1, 28, 28) and data.test_x.shape == (10000, 1, 28, 28)
    assert data.class_names[0].startswith("T") and torch.bincount(data.train_y).tolist() == [6000] * 10


def test_zca_round_trip_and_save(tmp_path, digits):
    pre = Preprocessor.fit(PreprocessConfig(zca=True), digits.train_x)
    z = pre(digits.train_x[:50])
    assert z.dtype == torch.float32 and z.shape == (50, 1, 8, 8)
    back = pre.to_pixels(z)
    assert torch.allclose(back, digits.train_x[:50].float() / 255, atol=1e-4)
    pre.save(tmp_path / "p.safetensors")
    again = Preprocessor.load(tmp_path / "p.safetensors")
    assert again.mode == "zca" and torch.allclose(again(digits.train_x[:50]), z)


def test_kip_zca_whitens_per_image_normalised_rows_and_round_trips(tmp_path, digits):
    """RaT-BPTT's (KIP's) ZCA: rows centred and unit-norm first, so an image's brightness and contrast do not matter;
    with a tiny regulariser the train rows come out white (identity covariance off the constant direction)."""
    from hf_condense.data.preprocess import kip_zca, per_image_unit

    g = torch.Generator().manual_seed(0)
    rows = torch.rand(2000, 12, generator=g, dtype=torch.float64) @ torch.rand(
        12, 12, generator=g, dtype=torch.float64
    )
    state = kip_zca(rows, 1e-9)
    white = per_image_unit(rows).float() @ state["transform_matrix"]
    centring = torch.eye(12) - torch.full((12, 12), 1 / 12)
    assert torch.allclose(white.T @ white / len(white), centring, atol=2e-3)

    cfg = PreprocessConfig(zca=True, zca_form="kip")
    pre = Preprocessor.fit(cfg, digits.train_x)
    x = digits.train_x[:50].float() / 255
    z = pre(x)
    assert pre.mode == "zca_kip" and torch.allclose(pre(0.5 * x + 0.2), z, atol=1e-4)  # per-image affine invariance
    low, high = x.flatten(1).min(1).values, x.flatten(1).max(1).values
    stretched = (x - low[:, None, None, None]) / (high - low)[:, None, None, None]
    assert torch.allclose(pre.to_pixels(z), stretched, atol=1e-3)
    cached = Preprocessor.fit_cached(cfg, digits.train_x, "k", tmp_path)
    assert Preprocessor.fit_cached(cfg, digits.train_x, "k", tmp_path).mode == cached.mode == "zca_kip"
    assert "zca_form" not in PreprocessConfig(zca=True).key() and cfg.key()["zca_form"] == "kip"


def test_normalisation_statistics(digits):
    pre = Preprocessor.fit(PreprocessConfig(), digits.train_x)
    x = pre(digits.train_x)
    assert abs(float(x.mean())) < 1e-3 and abs(float(x.std()) - 1) < 1e-2


def test_preprocessor_takes_numpy_arrays_and_pil_images(digits):
    from PIL import Image

    pre = Preprocessor.fit(PreprocessConfig(), digits.train_x)
    x = digits.train_x[:4]
    want = pre(x)
    assert torch.equal(pre(x.numpy()), want)  # N x C x H x W
    assert torch.equal(pre(x.permute(0, 2, 3, 1).numpy()), want)  # N x H x W x C, as `datasets` gives them
    assert torch.equal(pre(x[:, 0].numpy()), want)  # N x H x W, one channel
    pil = [Image.fromarray(a) for a in x[:, 0].numpy()]
    assert torch.equal(pre(pil), want) and torch.equal(pre(pil[0]), want[:1])


def test_a_hub_id_is_read_from_its_mapped_local_copy(tmp_path, monkeypatch):
    make_repo(tmp_path / "copies" / "tiny_set")
    monkeypatch.setenv("HF_CONDENSE_DATASETS", str(tmp_path / "copies"))
    data = load_real_data(DatasetConfig(path="some-org/tiny_set"))
    assert data.train_x.shape == (40, 3, 8, 8) and data.source["path"] == "some-org/tiny_set"  # the Hub id is kept
    monkeypatch.setenv("HF_CONDENSE_DATASETS", str(tmp_path / "elsewhere"))  # no copy there: the Hub is asked
    with pytest.raises(RecipeError, match="some-org/tiny_set"):
        load_real_data(DatasetConfig(path="some-org/tiny_set"))


@pytest.mark.skipif(not FASHION.is_dir(), reason="../shared/datasets/fashion_mnist not present")
def test_shipped_recipes_name_hub_ids_and_run_offline_through_the_mapping(monkeypatch):
    from hf_condense.data.sources import local_copy
    from hf_condense.stages.recipe import load_recipe

    monkeypatch.setenv("HF_CONDENSE_DATASETS", str(FASHION.parent))
    for recipe in sorted((Path(__file__).resolve().parents[2] / "recipes").glob("*.yaml")):
        path = load_recipe(recipe).dataset.path
        assert path == "sklearn/digits" or (path.count("/") == 1 and not path.startswith(".")), recipe.name
    assert local_copy("zalando-datasets/fashion_mnist") == FASHION
    assert local_copy("uoft-cs/cifar10") in (None, FASHION.parent / "cifar10")
