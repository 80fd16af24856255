"""A distilled dataset as a folder laid out exactly like a Hub dataset repo, one config per stage.

    README.md                      card whose `configs:` lists stage_1..stage_P (the last one is the default)
    preprocessing.safetensors      the map from pixels to the input space of the images (mean/std, ZCA)
    recipe.yaml, run.json          the resolved recipe, versions and command
    stage_k/train-00000-of-00001.parquet
    stage_k/stage.json             IPC, lr, epochs, method, recipe hash (a sidecar survives re-pushes)

`load_dataset(folder, "stage_k")` reads stage k with plain `datasets`. Stages are written to a temporary folder and
renamed, so a stage folder either is complete or does not exist.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import datasets
import numpy as np
import torch

from .io import atomic_path, write_json
from .methods.base import SynSet

STAGE_FORMAT = 1


class StageDataError(ValueError):
    """A stored stage that cannot be used (newer format, non-finite values, incomplete repo); one line says why."""


PARQUET_NAME = "train-00000-of-00001.parquet"
_STAGE_RE = re.compile(r"^stage_(\d+)$")


def stage_name(k: int) -> str:
    return f"stage_{k}"


def stage_features(class_names: list[str], shape: tuple[int, ...], soft: bool) -> datasets.Features:
    feats = {
        "image": datasets.Array3D(shape=tuple(shape), dtype="float32"),
        "label": datasets.ClassLabel(names=list(class_names)),
    }
    if soft:
        feats["soft_label"] = datasets.List(datasets.Value("float32"), length=len(class_names))
    feats["preview"] = datasets.Image()
    return datasets.Features(feats)


def _previews(pixels: torch.Tensor) -> list[np.ndarray]:
    arr = (pixels * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return [a[..., 0] if a.shape[-1] == 1 else a for a in arr]


def write_stage(folder: str | Path, k: int, syn: SynSet, meta: dict, class_names: list[str], preprocessor) -> Path:
    """Write stage k (parquet + stage.json) atomically; returns its folder."""
    images = syn.images.detach().float().cpu()
    columns = {"image": images.numpy(), "label": syn.labels.cpu().tolist()}
    if syn.soft_labels is not None:
        columns["soft_label"] = syn.soft_labels.detach().float().cpu().numpy()
    columns["preview"] = _previews(preprocessor.to_pixels(images))
    ds = datasets.Dataset.from_dict(
        columns, features=stage_features(class_names, images.shape[1:], syn.soft_labels is not None)
    )
    target = Path(folder) / stage_name(k)
    with atomic_path(target) as tmp:
        tmp.mkdir()
        ds.to_parquet(str(tmp / PARQUET_NAME))
        full = {
            **{key: v for key, v in meta.items() if key != "source_indices"},
            "format": STAGE_FORMAT,
            "stage": k,
            "num_images": len(images),
            "lr": float(syn.lr),
        }
        if syn.indices is not None:
            full["source_indices"] = syn.indices.tolist()
        write_json(tmp / "stage.json", full)
    return target


def read_stage_meta(stage_dir: str | Path) -> dict:
    path = Path(stage_dir) / "stage.json"
    meta = json.loads(path.read_text())
    if meta.get("format", 0) > STAGE_FORMAT:
        raise StageDataError(
            f"{path}: stage format {meta['format']} is newer than this hf_condense reads "
            f"({STAGE_FORMAT}); upgrade hf_condense"
        )
    return meta


def stage_dataset_to_synset(ds: datasets.Dataset, meta: dict) -> SynSet:
    """A stage's `datasets.Dataset` (and its metadata) as tensors."""
    t = ds.with_format("torch", columns=[c for c in ("image", "label", "soft_label") if c in ds.column_names])
    soft = t["soft_label"][:].float() if "soft_label" in ds.column_names else None
    idx = meta.get("source_indices")
    images = t["image"][:].float()
    bad = int((~torch.isfinite(images)).sum())
    if bad:
        raise StageDataError(
            f"stage_{meta.get('stage', '?')}: {bad} image value(s) are NaN or infinite; the stage is corrupt "
            "(redistil it, or load an earlier revision)"
        )
    return SynSet(
        images,
        t["label"][:].long(),
        float(meta["lr"]),
        soft_labels=soft,
        indices=torch.tensor(idx, dtype=torch.long) if idx is not None else None,
        meta=dict(meta),  # a copy: replays that change a schedule leave the stage as loaded
    )


def stage_dataset(stage_dir: str | Path) -> datasets.Dataset:
    """A stage's parquet shards as one in-memory `datasets.Dataset` (features from the file's schema). Read directly,
    not through the `datasets` cache, which can serve an older stage rewritten at the same path."""
    import pyarrow.parquet as pq

    shards = sorted(Path(stage_dir).glob("train-*.parquet"))
    if not shards:
        raise FileNotFoundError(f"{stage_dir}: no train-*.parquet file")
    return datasets.concatenate_datasets([datasets.Dataset(pq.read_table(f)) for f in shards])


def read_stage(stage_dir: str | Path) -> SynSet:
    return stage_dataset_to_synset(stage_dataset(stage_dir), read_stage_meta(stage_dir))


def list_stages(folder: str | Path) -> list[int]:
    """Stage numbers present in a folder, in numeric order (stage_10 after stage_9)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [int(m.group(1)) for p in folder.iterdir() if p.is_dir() and (m := _STAGE_RE.match(p.name))]
    return sorted(found)


def configs_entries(stages: list[int]) -> list[dict]:
    """README `configs:` entries, one per stage, the last one the default."""
    out = []
    for k in stages:
        entry = {"config_name": stage_name(k), "data_files": [{"split": "train", "path": f"{stage_name(k)}/train-*"}]}
        if k == stages[-1]:
            entry["default"] = True
        out.append(entry)
    return out
