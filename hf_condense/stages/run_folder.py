"""The run folder: one class owns every path and file name of an output folder, laid out exactly like a Hub dataset
repo with one config per stage (LAYOUT lists its files and what each holds).

`load_dataset(folder, "stage_k")` reads stage k with plain `datasets`. Every file is written to a temporary name of
our own and renamed, so a stage folder either is complete or does not exist; `RunFolder.start` makes a folder
recognisable as a run from its first file, so a kill at any instant leaves it resumable. The engine writes it; the
hub layer (card, push, replay) reads it through the names and file lists defined here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import datasets
import numpy as np
import torch

from ..core.io import (
    atomic_path,
    file_sha256,
    is_own_temporary,
    recover_interrupted_writes,
    save_safetensors,
    write_json,
    write_text,
)
from ..core.paths import unwritable
from ..core.progress import quiet_datasets
from ..methods.base import SynSet

RUN_JSON, RECIPE, PREPROCESSING, CARD, RESULTS = (
    "run.json",
    "recipe.yaml",
    "preprocessing.safetensors",
    "README.md",
    "results.json",
)
FORGETTING, CURVE, IMAGES, CHECKPOINTS, LOGS, LOCK = (
    "forgetting.safetensors",
    "accuracy_vs_ipc.png",
    "images",
    ".checkpoints",
    "logs",
    ".hf_condense.lock",
)
STAGE_META, PARQUET_STEM = "stage.json", "train-00000-of-00001"
OVERVIEW = f"{IMAGES}/overview.png"  # every stage's grid side by side
_STAGE_RE = re.compile(r"^stage_(\d+)$")

# Every file of a run folder and what it holds, in the order they appear (docs/reference/output.md is generated from
# it); `k` is a stage's number.
LAYOUT = [
    (RUN_JSON, "written first, so the folder is a run from then on: stage hashes, versions, the command, threads"),
    (RECIPE, "the resolved recipe (every key, defaults included)"),
    (PREPROCESSING, "the map from pixels to the images' input space and back (mean/std, ZCA matrices)"),
    (
        f"stage_k/{PARQUET_STEM}-<sha256 prefix>.parquet",
        "stage k's own images: `image` (float32, C x H x W, in the "
        "input space), `label`, optional `soft_label`, and `preview` (pixel space)",
    ),
    (
        f"stage_k/{STAGE_META}",
        "IPC, lr (learned for MTT), epochs, optimiser, method, scheme, stage hash, the sha256 of "
        "the parquet, the distillation log",
    ),
    (CARD, "the dataset card: its `configs:` lists stage_1..stage_P, the last one the default"),
    (RESULTS, "per-stage accuracies per model, random-real and whole-data references, DD-Ranking's scores"),
    (FORGETTING, "forgetting scores of the real train set (a forgetting curriculum only)"),
    (
        f"{IMAGES}/stage_k.png, {OVERVIEW}, {CURVE}",
        "the card's figures: each stage's images, all stages, accuracy against IPC",
    ),
    (
        f"{CHECKPOINTS}/stage_k/",
        "resumable in-stage state: images, step size, optimiser and generator states (never uploaded)",
    ),
    (f"{LOGS}/", "local trackers (tensorboard, wandb) when `output.log_with` names them (never uploaded)"),
    (LOCK, "the writer's advisory lock: a second process on the folder is refused (never uploaded)"),
]

# What leaves the folder for the Hub (no checkpoints, logs, locks or temporary files), and what a replay downloads.
TOP_FILES = [CARD, PREPROCESSING, RECIPE, RUN_JSON]
FINAL_FILES = [*TOP_FILES, RESULTS, FORGETTING, CURVE, f"{IMAGES}/*.png"]
REPLAY_FILES = [CARD, PREPROCESSING, RECIPE, RESULTS, "stage_*/*"]


def grid_name(k: int) -> str:
    """Stage k's image grid, relative to the folder (as the card links it)."""
    return f"{IMAGES}/{stage_name(k)}.png"


def stage_patterns(k: int) -> list[str]:
    """The upload patterns of stage k's files."""
    return [f"{stage_name(k)}/*.parquet", f"{stage_name(k)}/{STAGE_META}", grid_name(k)]


class FolderLockedError(RuntimeError):
    """Another process is writing the same output folder."""


class RunFolder:
    """An output folder of hf_condense: its paths, its start, its stages, its checkpoints and its lock."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = None

    # Paths: the only place that spells the folder's file names.
    @property
    def run_json(self) -> Path:
        return self.path / RUN_JSON

    @property
    def recipe(self) -> Path:
        return self.path / RECIPE

    @property
    def preprocessing(self) -> Path:
        return self.path / PREPROCESSING

    @property
    def card(self) -> Path:
        return self.path / CARD

    @property
    def results(self) -> Path:
        return self.path / RESULTS

    @property
    def forgetting(self) -> Path:
        return self.path / FORGETTING

    @property
    def curve(self) -> Path:
        return self.path / CURVE

    @property
    def logs(self) -> Path:
        return self.path / LOGS

    @property
    def overview(self) -> Path:
        return self.path / OVERVIEW

    def grid(self, k: int) -> Path:
        return self.path / grid_name(k)

    def stage_dir(self, k: int) -> Path:
        return self.path / stage_name(k)

    def checkpoint_dir(self, k: int) -> Path:
        return self.path / CHECKPOINTS / stage_name(k)

    # State of the folder.
    def stages(self) -> list[int]:
        """Stage numbers present, in numeric order (stage_10 after stage_9)."""
        return list_stages(self.path)

    def is_run(self) -> bool:
        return self.run_json.is_file()

    def checkpoint_dirs(self) -> list[Path]:
        """The in-stage checkpoint folders present (stages that started and have not finished)."""
        return sorted((self.path / CHECKPOINTS).glob("stage_*"))

    def has_progress(self) -> bool:
        """A finished stage or a non-empty in-stage checkpoint: a run here resumes rather than starts."""
        return bool(self.stages()) or any(any(d.iterdir()) for d in self.checkpoint_dirs())

    def is_fresh(self) -> bool:
        """Empty, or holding only what hf_condense itself leaves before a run's first file (its lock, temporary
        names of an interrupted first write, tracker logs)."""
        if not self.path.is_dir():
            return True
        return all(p.name in (LOCK, LOGS) or is_own_temporary(p.name) for p in self.path.iterdir())

    def run_info(self) -> dict:
        return json.loads(self.run_json.read_text())

    def check(
        self, hashes: list[str], earlier: list[dict[str, str]] | None = None, same: list[set[str]] | None = None
    ) -> list[str]:
        """Why a run with these stage hashes may not use this folder (empty: it may start, resume or extend it).

        Only finished stages must agree: a stage that never finished (divergence, kill) does not block a rerun with
        changed settings; its checkpoint is discarded by `start`. `earlier`: per stage, the hashes an earlier
        release gave the same recipe, with what changed since (`Recipe.earlier_hashes`), named when one matches.
        `same`: per stage, other hashes of the very same stages (`Recipe.equivalent_hashes`), accepted.
        """
        folder = self.path
        why = self.unwritable()
        if why:
            return [why]
        if self.is_fresh():
            return []
        if not self.is_run():
            return [f"output.dir: {str(folder)!r} is not empty and holds no hf_condense run; choose another folder"]
        try:
            old = self.run_info().get("stage_hashes")
        except ValueError:
            return [f"output.dir: {self.run_json} is corrupt; remove the folder or choose another one"]
        if not isinstance(old, list):
            return [
                f"output.dir: {self.run_json} was written by an older hf_condense (no stage hashes); choose another "
                "folder"
            ]
        written = self.stages()
        if len(written) > len(hashes):
            return [
                f"output.dir: {str(folder)!r} holds {len(written)} stages but stages.count is {len(hashes)}; "
                "raise stages.count to extend the run, or choose another folder"
            ]
        for k in written:
            a = old[k - 1] if k <= len(old) else None
            if a == hashes[k - 1] or (same and a in same[k - 1]):
                continue
            changed = earlier[k - 1].get(a) if earlier else None
            if changed:
                return [
                    f"output.dir: {str(folder)!r} holds stages made by an earlier hf_condense with this recipe, and "
                    f"stage {k} would change ({changed}); choose another folder or remove it"
                ]
            return [
                f"output.dir: {str(folder)!r} holds stages of a different recipe (stage {k}: hash {a}, this "
                f"recipe {hashes[k - 1]}); choose another folder or remove it"
            ]
        return []

    def unwritable(self) -> str | None:
        """Why the folder cannot be made or written here (a file on the way, a read-only or virtual file system)."""
        return unwritable(self.path, "output.dir")

    def start(
        self, hashes: list[str], recipe_yaml: str, info: dict, preprocessor, same: list[set[str]] | None = None
    ) -> list[str]:
        """Take the folder for a run: lock it, undo interrupted writes, drop the checkpoints of unfinished stages
        whose settings changed, and write run.json (first: the marker), recipe.yaml and the preprocessing. Returns
        one line per thing it undid or dropped."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.lock()
        notes = []
        for folder in [self.path, *self.checkpoint_dirs()]:
            notes += [f"{folder}: {line}" for line in recover_interrupted_writes(folder)]
        old = self.run_info().get("stage_hashes", []) if self.is_run() else []
        for k, h in enumerate(hashes, start=1):
            ckpt = self.checkpoint_dir(k)
            if ckpt.is_dir() and k <= len(old) and old[k - 1] != h and not (same and old[k - 1] in same[k - 1]):
                shutil.rmtree(ckpt)
                notes.append(f"stage {k} never finished under other settings: its checkpoint was discarded")
        write_json(self.run_json, {"stage_hashes": hashes, **info})
        write_text(self.recipe, recipe_yaml)
        preprocessor.save(self.preprocessing)
        return notes

    def lock(self) -> None:
        """An advisory lock held while this process writes the folder: a second process is refused."""
        if self._lock is not None:
            return
        import fcntl

        handle = open(self.path / LOCK, "a")  # noqa: SIM115 (held for the life of the run)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise FolderLockedError(
                f"output.dir: {str(self.path)!r} is being written by another process (pid in {self.path / LOCK}); "
                "wait for it or choose another folder"
            ) from None
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._lock = handle

    def unlock(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    # Stages and side files.
    def write_stage(self, k: int, syn: SynSet, meta: dict, class_names: list[str], preprocessor) -> Path:
        return write_stage(self.path, k, syn, meta, class_names, preprocessor)

    def read_stage(self, k: int) -> SynSet:
        return read_stage(self.stage_dir(k))

    def verify_stages(self) -> None:
        """Every stage's files against the checksums it recorded (StageDataError names a missing or altered one)."""
        for k in self.stages():
            stage_files(self.stage_dir(k), self.stage_meta(k))

    def stage_meta(self, k: int) -> dict:
        return read_stage_meta(self.stage_dir(k))

    def stage_metas(self) -> list[dict]:
        return [self.stage_meta(k) for k in self.stages()]

    def finish_stage(self, k: int) -> None:
        """Drop the in-stage checkpoints of a stage that is written."""
        shutil.rmtree(self.checkpoint_dir(k), ignore_errors=True)

    def save_forgetting(self, scores: torch.Tensor) -> None:
        save_safetensors({"scores": scores}, self.forgetting)

    def write_results(self, results: dict) -> None:
        write_json(self.results, results)

    def read_results(self) -> dict | None:
        return json.loads(self.results.read_text()) if self.results.is_file() else None


STAGE_FORMAT = 1


class StageDataError(ValueError):
    """A stored stage that cannot be used (newer format, non-finite values, incomplete repo); one line says why."""


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
        # The file is named by its checksum: the README's config then points at this very file, so the `datasets`
        # cache key of the config changes with the stage's contents (two folders of one name, a folder rewritten).
        written = tmp / f"{PARQUET_STEM}.parquet"
        with quiet_datasets():
            ds.to_parquet(str(written))
        digest = file_sha256(written)
        name = f"{PARQUET_STEM}-{digest[:16]}.parquet"
        written.rename(tmp / name)
        full = {
            **{key: v for key, v in meta.items() if key not in ("source_indices", "files")},
            "format": STAGE_FORMAT,
            "stage": k,
            "num_images": len(images),
            "lr": float(syn.lr),
            "files": {name: digest},
        }
        if syn.indices is not None:
            full["source_indices"] = syn.indices.tolist()
        write_json(tmp / STAGE_META, full)
    return target


def stage_files(stage_dir: str | Path, meta: dict) -> list[Path]:
    """The stage's parquet files, verified against the checksums its stage.json records (stages written before
    checksums were recorded: every train-*.parquet, unverified). A missing or altered file is refused."""
    stage_dir = Path(stage_dir)
    recorded = meta.get("files")
    if recorded is None:
        return sorted(stage_dir.glob("train-*.parquet"))
    files = []
    for name, digest in sorted(recorded.items()):
        path = stage_dir / name
        if not path.is_file():
            raise StageDataError(f"{path}: missing; the stage is incomplete (redistil it, or download it again)")
        if file_sha256(path) != digest:
            raise StageDataError(
                f"{path}: its contents do not match the checksum in {STAGE_META}; the stage was altered or damaged "
                "(redistil it, or download it again)"
            )
        files.append(path)
    return files


def read_stage_meta(stage_dir: str | Path) -> dict:
    path = Path(stage_dir) / STAGE_META
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise StageDataError(f"{path}: unreadable or damaged ({type(e).__name__}: {e}); redistil the stage") from None
    if not isinstance(meta, dict) or "lr" not in meta:
        raise StageDataError(f"{path}: damaged (no stage metadata with an lr); redistil the stage")
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
    labels = t["label"][:].long()
    classes = ds.features["label"].num_classes if hasattr(ds.features["label"], "num_classes") else None
    if classes is not None and len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= classes):
        raise StageDataError(
            f"stage_{meta.get('stage', '?')}: label ids {int(labels.min())}..{int(labels.max())} fall outside the "
            f"{classes} classes; the stage is corrupt (redistil it)"
        )
    bad = int((~torch.isfinite(images)).sum())
    if bad:
        raise StageDataError(
            f"stage_{meta.get('stage', '?')}: {bad} image value(s) are NaN or infinite; the stage is corrupt "
            "(redistil it, or load an earlier revision)"
        )
    return SynSet(
        images,
        labels,
        float(meta["lr"]),
        soft_labels=soft,
        indices=torch.tensor(idx, dtype=torch.long) if idx is not None else None,
        meta=dict(meta),  # a copy: replays that change a schedule leave the stage as loaded
    )


def stage_dataset(stage_dir: str | Path, meta: dict) -> datasets.Dataset:
    """A stage's parquet shards as one in-memory `datasets.Dataset` (features from the file's schema). Read directly,
    not through the `datasets` cache, which can serve an older stage rewritten at the same path."""
    import pyarrow.parquet as pq

    shards = stage_files(stage_dir, meta)
    if not shards:
        raise FileNotFoundError(f"{stage_dir}: no train-*.parquet file")
    tables = []
    for f in shards:
        try:
            tables.append(datasets.Dataset(pq.read_table(f)))
        except Exception as e:  # pyarrow raises several kinds for a truncated or garbled file
            raise StageDataError(f"{f}: unreadable or damaged ({type(e).__name__}); redistil the stage") from None
    return datasets.concatenate_datasets(tables)


def read_stage(stage_dir: str | Path) -> SynSet:
    meta = read_stage_meta(stage_dir)
    return stage_dataset_to_synset(stage_dataset(stage_dir, meta), meta)


def list_stages(folder: str | Path) -> list[int]:
    """Stage numbers present in a folder, in numeric order (stage_10 after stage_9)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [int(m.group(1)) for p in folder.iterdir() if p.is_dir() and (m := _STAGE_RE.match(p.name))]
    return sorted(found)


def configs_entries(stage_metas: list[dict]) -> list[dict]:
    """README `configs:` entries, one per stage (its recorded parquet files, else train-*), the last one the
    default."""
    out = []
    for i, meta in enumerate(stage_metas):
        name = stage_name(meta["stage"])
        paths = [f"{name}/{f}" for f in sorted(meta.get("files", {}))] or [f"{name}/train-*"]
        entry = {"config_name": name, "data_files": [{"split": "train", "path": p} for p in paths]}
        if i == len(stage_metas) - 1:
            entry["default"] = True
        out.append(entry)
    return out
