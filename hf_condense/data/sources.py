"""Real data: any `datasets` image-classification source into uint8 tensors, in bulk.

A Hub id, a local folder laid out like a Hub repo, and the offline scikit-learn digits all go through the same
`datasets` path; the only difference is where the `DatasetDict` comes from.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

import datasets
import pyarrow
import torch

from ..core.config import RecipeError, opt
from ..core.paths import expect_folder, kind

logger = logging.getLogger("hf_condense.data")

DIGITS = "sklearn/digits"


@dataclass
class DatasetConfig:
    """Where the real data comes from."""

    path: str = opt("sklearn/digits", help="Hub id, local folder laid out like a Hub repo, or 'sklearn/digits'.")
    name: str | None = opt(None, help="Dataset config name (e.g. 'cropped_digits' for SVHN).")
    revision: str | None = opt(None, help="Git revision of a Hub dataset.")
    train_split: str = opt("train", help="Split to distil from.")
    test_split: str = opt("test", help="Split to evaluate on.")
    image_column: str | None = opt(None, help="Image column; default: the first Image feature.")
    label_column: str | None = opt(None, help="Label column; default: the first ClassLabel feature.")


@dataclass
class RealData:
    """Train and test images (uint8, N x C x H x W) with integer labels and the source's class names."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    class_names: list[str]
    source: dict = field(default_factory=dict)
    val_x: torch.Tensor | None = None  # a validation split held out from the train split (`hold_out`)
    val_y: torch.Tensor | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def in_chans(self) -> int:
        return self.train_x.shape[1]

    @property
    def img_size(self) -> int:
        return self.train_x.shape[-1]

    def class_counts(self) -> torch.Tensor:
        return torch.bincount(self.train_y, minlength=self.num_classes)

    def class_indices(self) -> list[torch.Tensor]:
        """Train indices of each class, in order."""
        return [torch.nonzero(self.train_y == c).flatten() for c in range(self.num_classes)]

    def hold_out(self, per_class: int, seed: int) -> RealData:
        """This data with `per_class` random train examples of every class moved into a validation split (the same
        ones for a seed); nothing of them is left to train on."""
        g = torch.Generator().manual_seed(seed)
        short = [c for c, n in enumerate(self.class_counts().tolist()) if n <= per_class]
        if short:
            raise RecipeError(
                [
                    f"evaluation.validation_per_class: {per_class} would leave class(es) {short[:5]} of split "
                    f"{self.source.get('train_split', 'train')!r} without train examples; hold out fewer"
                ]
            )
        val = torch.cat([idx[torch.randperm(len(idx), generator=g)[:per_class]] for idx in self.class_indices()])
        keep = torch.ones(len(self.train_y), dtype=torch.bool)
        keep[val] = False
        return replace(
            self,
            train_x=self.train_x[keep],
            train_y=self.train_y[keep],
            val_x=self.train_x[val],
            val_y=self.train_y[val],
            source={**self.source, "validation": {"per_class": per_class, "seed": seed}},
        )


@functools.lru_cache(maxsize=1)
def digits_dataset_dict() -> datasets.DatasetDict:
    """scikit-learn's bundled 8x8 digits as a DatasetDict (Image + ClassLabel), split 80/20 stratified, seed 0."""
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = np.clip(np.rint(bunch.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    idx_train, idx_test = train_test_split(
        np.arange(len(images)), test_size=0.2, random_state=0, stratify=bunch.target
    )
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=[str(i) for i in range(10)])}
    )

    def split(idx):
        return datasets.Dataset.from_dict(
            {"image": list(images[idx]), "label": bunch.target[idx].tolist()}, features=features
        )

    return datasets.DatasetDict({"train": split(idx_train), "test": split(idx_test)})


def local_cache_dir(folder: Path) -> str:
    """A `datasets` cache folder of its own for a local dataset folder, keyed by its absolute path and its files'
    sizes and times: the shared cache serves a stale copy of another folder with the same name."""
    stats = {str(p.relative_to(folder)): p.stat() for p in folder.rglob("*")}
    files = sorted((name, st.st_size, st.st_mtime_ns) for name, st in stats.items())
    key = hashlib.sha256(json.dumps([str(folder.absolute()), files]).encode()).hexdigest()[:16]
    return str(Path(datasets.config.HF_DATASETS_CACHE) / "hf_condense_local" / key)


LOCAL_DATASETS = "HF_CONDENSE_DATASETS"  # folder of local copies of Hub datasets, one per dataset name


def local_copy(path: str) -> Path | None:
    """Where a Hub id is read from on an offline machine: with HF_CONDENSE_DATASETS set, the Hub id `owner/name` is
    the folder `$HF_CONDENSE_DATASETS/name` when that holds a copy laid out like the Hub repo (README.md or data/);
    recipes keep naming the Hub id, and the run records it as its source. None: load from the Hub (or `path` is a
    folder already)."""
    folder = None if Path(path).is_dir() else _mapped_folder(path)
    return folder if folder and ((folder / "README.md").is_file() or (folder / "data").is_dir()) else None


def _mapped_folder(path: str) -> Path | None:
    """`$HF_CONDENSE_DATASETS/name` for a Hub id `owner/name` when the variable is set, whether or not it exists."""
    root = os.environ.get(LOCAL_DATASETS)
    return Path(root).expanduser() / path.split("/")[1] if root and path.count("/") == 1 else None


@contextlib.contextmanager
def _quiet_retries():
    """Hide huggingface_hub's per-retry network warnings: a Hub that cannot be reached ends in one line of ours."""
    http = logging.getLogger("huggingface_hub.utils._http")
    level = http.level
    http.setLevel(logging.ERROR)
    try:
        yield
    finally:
        http.setLevel(level)


def _offline_hint(path: str) -> str:
    """What to do when a Hub id cannot be reached: the local mapping, and why it did not apply if it is set."""
    copy = _mapped_folder(path)
    if copy is not None:
        root = os.environ[LOCAL_DATASETS]
        return (
            f"{LOCAL_DATASETS}={root} is set, but {copy} is not a copy laid out like the Hub repo (README.md or data/)"
        )
    return (
        f"give a local folder laid out like a Hub dataset repo, set {LOCAL_DATASETS} to a folder of such copies "
        "(one per dataset name), or retry with network access"
    )


def _load_cached(cfg: DatasetConfig, where: Path, local: bool) -> datasets.DatasetDict:
    """`datasets.load_dataset` of the source. A damaged cache (a half-written arrow file) of a local folder is ours
    to rebuild: it is removed, said in one line, and built again from the folder. A Hub id's cache is the user's
    `datasets` cache: one line names it and what to do."""
    cache = local_cache_dir(where) if local else None
    load = functools.partial(
        datasets.load_dataset, str(where) if local else cfg.path, cfg.name, revision=None if local else cfg.revision
    )
    try:
        return load(cache_dir=cache)
    except (pyarrow.ArrowException, OSError) as e:
        if not isinstance(e, pyarrow.ArrowException) and type(e) is not OSError:  # pyarrow reads as plain OSError
            raise  # not found, no network, permissions: load_source's own lines
        if not local:
            hub_cache = Path(datasets.config.HF_DATASETS_CACHE) / cfg.path.replace("/", "___")
            raise RecipeError(
                [
                    f"dataset.path: the datasets cache of {cfg.path!r} is damaged ({e}); delete {hub_cache} and "
                    "rerun to download it again"
                ]
            ) from None
        logger.warning(f"the datasets cache of {where} was damaged ({e}); rebuilding it from the folder")
        shutil.rmtree(cache, ignore_errors=True)
        return load(cache_dir=cache)


def load_source(cfg: DatasetConfig) -> datasets.DatasetDict:
    """The `DatasetDict` behind a recipe's dataset section (a Hub id from its local copy when one is mapped)."""
    if cfg.path == DIGITS:
        return digits_dataset_dict()
    where = local_copy(cfg.path) or Path(cfg.path)
    local = where.is_dir()
    if not local and kind(where) != "nothing":
        raise RecipeError(
            [f"dataset.path: {expect_folder(where, 'a dataset folder laid out like a Hub repo, or a Hub id')}"]
        )
    try:
        with _quiet_retries():
            return _load_cached(cfg, where, local)
    except RecipeError:
        raise
    except ConnectionError:
        hint = _offline_hint(cfg.path)
        raise RecipeError(
            [f"dataset.path: cannot reach {cfg.path!r} on the Hub (offline, or no network here); {hint}"]
        ) from None
    except FileNotFoundError as e:
        raise RecipeError(
            [f"dataset.path: {cfg.path!r} is neither a local dataset folder nor a reachable Hub dataset ({e})"]
        ) from None
    except ValueError as e:
        raise RecipeError([f"dataset: could not load {cfg.path!r} (config {cfg.name!r}): {e}"]) from None


def _pick_column(features: datasets.Features, wanted: str | None, kind: type, key: str, errors: list[str]):
    if wanted is not None:
        if wanted not in features:
            errors.append(f"dataset.{key}: column {wanted!r} is not in the dataset; columns: {', '.join(features)}")
        elif not isinstance(features[wanted], kind) and not (
            kind is datasets.ClassLabel and _is_int(features[wanted])
        ):
            errors.append(
                f"dataset.{key}: column {wanted!r} is {type(features[wanted]).__name__}, expected {kind.__name__}"
            )
        return wanted
    for name, feat in features.items():
        if isinstance(feat, kind):
            return name
    errors.append(
        f"dataset.{key}: no {kind.__name__} column found; columns: {', '.join(features)} "
        f"(name the column in the recipe)"
    )
    return None


def _is_int(feat) -> bool:
    return isinstance(feat, datasets.Value) and feat.dtype.startswith(("int", "uint"))


def _images(ds: datasets.Dataset, column: str) -> torch.Tensor:
    """All images of a split as one uint8 N x C x H x W tensor, decoded by `datasets` in bulk."""
    out = ds.with_format("torch")[column][:]
    if isinstance(out, list):  # mixed L/RGB images: force one mode
        out = ds.cast_column(column, datasets.Image(mode="RGB")).with_format("torch")[column][:]
    if isinstance(out, list):
        sizes = sorted({tuple(t.shape) for t in out})[:3]
        raise RecipeError(
            [f"dataset.image_column: images of {column!r} differ in size {sizes}; resize the dataset first"]
        )
    return out.unsqueeze(1) if out.ndim == 3 else out


def compact_labels(names: list[str], train_y: torch.Tensor, test_y: torch.Tensor) -> dict | None:
    """Re-encode the label ids that have train examples as 0..K-1 when some ids of the label space have none
    (a class-filtered dataset, 1-based integer labels); None when they are already contiguous.

    Test examples of a class without train examples are left out: no image can be distilled for them. The record
    (`source_ids[new id]`, the kept names, how many test examples were left out) goes into the run's data key and
    run.json, so the stages' label ids can be read back against the source's."""
    present = torch.unique(train_y)
    if len(present) == len(names) and (len(present) == 0 or int(present[-1]) == len(names) - 1):
        return None
    size = max([len(names)] + [int(y.max()) + 1 for y in (train_y, test_y) if len(y)])
    lookup = torch.full((size,), -1)
    lookup[present] = torch.arange(len(present))
    new_test = lookup[test_y]
    keep = torch.nonzero(new_test >= 0).flatten()
    return {
        "source_ids": present.tolist(),
        "names": [names[i] if i < len(names) else str(i) for i in present.tolist()],
        "test_left_out": len(test_y) - len(keep),
        "train_y": lookup[train_y],
        "test_y": new_test[keep],
        "keep": keep,
    }


def load_real_data(cfg: DatasetConfig) -> RealData:
    """Load train and test splits as tensors, checking splits and columns first."""
    dd = load_source(cfg)
    errors = []
    for key in ("train_split", "test_split"):
        split = getattr(cfg, key)
        if split not in dd:
            errors.append(f"dataset.{key}: split {split!r} does not exist; splits: {', '.join(dd)}")
    if errors:
        raise RecipeError(errors)
    features = dd[cfg.train_split].features
    image_col = _pick_column(features, cfg.image_column, datasets.Image, "image_column", errors)
    label_col = _pick_column(features, cfg.label_column, datasets.ClassLabel, "label_column", errors)
    if errors:
        raise RecipeError(errors)
    train, test = dd[cfg.train_split], dd[cfg.test_split]
    train_y = train.with_format("torch")[label_col][:].long()
    test_y = test.with_format("torch")[label_col][:].long()
    label_feat = features[label_col]
    if isinstance(label_feat, datasets.ClassLabel):
        names = list(label_feat.names)
    else:
        names = [str(i) for i in range(int(max(train_y.max(), test_y.max())) + 1)]
    for split, y in ((cfg.train_split, train_y), (cfg.test_split, test_y)):
        if len(y) and y.min() < 0:
            raise RecipeError(
                [
                    f"dataset.label_column: {int((y < 0).sum())} example(s) of split {split!r} have negative "
                    f"(missing) labels in {label_col!r}; every example needs a class"
                ]
            )
    remap = compact_labels(names, train_y, test_y)
    if remap is not None:
        names, train_y, test_y, keep = remap["names"], remap.pop("train_y"), remap.pop("test_y"), remap.pop("keep")
        test = test.select(keep.tolist())
    data = RealData(
        _images(train, image_col),
        train_y,
        _images(test, image_col),
        test_y,
        names,
        source={
            "path": cfg.path,
            "name": cfg.name,
            "revision": cfg.revision,
            "image_column": image_col,
            "label_column": label_col,
            "fingerprint": getattr(train, "_fingerprint", None),
            "num_train": len(train),
            **({"label_remap": remap} if remap is not None else {}),
        },
    )
    if data.test_x.shape[1:] != data.train_x.shape[1:]:
        raise RecipeError(
            [
                f"dataset.test_split: test images {tuple(data.test_x.shape[1:])} differ from train "
                f"images {tuple(data.train_x.shape[1:])}"
            ]
        )
    return data
