"""Replay a distilled repo (Hub id or local folder) stage by stage: `hf_condense.load_progressive(source)`.

Everything comes from the repo's own files (parquet per stage, stage.json, preprocessing.safetensors, recipe.yaml),
read with `datasets`, safetensors, JSON and safe YAML only: no pickle, no remote code, no local state.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import yaml

from ..core.paths import expect_folder, kind
from ..data.formation import formation_factor_of
from ..data.preprocess import Preprocessor
from ..methods import SynSet
from ..stages.run_folder import (
    REPLAY_FILES,
    RunFolder,
    StageDataError,
    read_stage_meta,
    stage_dataset,
    stage_dataset_to_synset,
)
from .push import HubUnreachable


@dataclass
class Stage:
    """One stage: its own images as a `datasets.Dataset` and its training schedule."""

    number: int
    dataset: datasets.Dataset
    meta: dict

    @property
    def lr(self) -> float:
        return float(self.meta["lr"])

    @property
    def epochs(self) -> int:
        return int(self.meta["epochs"])

    @property
    def ipc(self) -> int:
        return int(self.meta["ipc"])

    @property
    def formation_factor(self) -> int:
        return formation_factor_of(self.meta)

    @property
    def soft_labels(self) -> bool:
        return "soft_label" in self.dataset.column_names

    def synset(self) -> SynSet:
        return stage_dataset_to_synset(self.dataset, self.meta)


@dataclass
class ProgressiveSet:
    """A distilled repo's stages in numeric order, with the preprocessing and recipe that made them."""

    source: str
    folder: Path
    stages: list[Stage]
    preprocessor: Preprocessor
    recipe: dict = field(repr=False)
    results: dict | None = field(default=None, repr=False)

    @property
    def class_names(self) -> list[str]:
        return list(self.stages[0].dataset.features["label"].names)

    def unions(self) -> Iterator[datasets.Dataset]:
        """S1, S1 u S2, ..., each as one `datasets.Dataset`."""
        for k in range(1, len(self.stages) + 1):
            yield datasets.concatenate_datasets([s.dataset for s in self.stages[:k]])

    def schedule(self) -> list[dict]:
        """Per stage: the lr and epochs to train it with, whether it carries soft labels, and its multi-formation
        factor (each stored image decodes into factor^2 training images)."""
        return [
            {
                "stage": s.number,
                "ipc": s.ipc,
                "lr": s.lr,
                "epochs": s.epochs,
                "optimizer": s.meta.get("schedule", {}).get("optimizer", "sgd"),
                "lr_decay": s.meta.get("schedule", {}).get("lr_decay", True),
                "soft_labels": s.soft_labels,
                "formation_factor": s.formation_factor,
            }
            for s in self.stages
        ]

    def synsets(self) -> list[SynSet]:
        return [s.synset() for s in self.stages]


def load_preprocessor(path: Path) -> Preprocessor:
    try:
        return Preprocessor.load(path)
    except Exception as e:  # safetensors raises its own error for a truncated or garbled file
        raise StageDataError(f"{path}: unreadable or damaged ({type(e).__name__}); it cannot map images") from None


def resolve(source: str | Path, revision: str | None = None) -> Path:
    """A local folder as is; a Hub id downloaded (only the files a replay reads) into the Hub cache."""
    if Path(source).is_dir():
        return Path(source)
    if kind(source) != "nothing":  # a file (or a socket...) here is not a Hub id the user meant
        raise FileNotFoundError(expect_folder(source, "a folder made by hf_condense, or a Hub dataset id"))
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    nowhere = f"{source}: neither a local folder nor a Hub dataset"
    try:
        return Path(
            snapshot_download(str(source), repo_type="dataset", revision=revision, allow_patterns=REPLAY_FILES)
        )
    except HFValidationError:
        raise FileNotFoundError(f"{nowhere} id (namespace/name): no such folder here") from None
    except LocalEntryNotFoundError:  # offline, no network, a wrong HF_ENDPOINT; nothing in the local Hub cache
        raise HubUnreachable(
            f"cannot reach the Hub at {constants.ENDPOINT} to download the dataset repo {source!r}, and no such local "
            "folder here; check the network (or HF_ENDPOINT), then rerun the same command"
        ) from None
    except Exception as e:  # not found, gated, a revision that does not exist: the Hub's own reason in brackets
        raise FileNotFoundError(f"{nowhere} that can be reached ({type(e).__name__}); no such folder here") from None


def load_progressive(source: str | Path, revision: str | None = None) -> ProgressiveSet:
    """Stages of a distilled repo in numeric order (stage_10 after stage_9), ready to replay as cumulative unions."""
    run = RunFolder(resolve(source, revision))
    folder = run.path
    numbers = run.stages()
    if not numbers:
        raise FileNotFoundError(f"{source}: no stage_k folders; is it a dataset made by hf_condense?")
    if numbers != list(range(1, len(numbers) + 1)):
        raise StageDataError(f"{source}: stages {numbers} are not 1..{len(numbers)}; the repo is incomplete")
    metas = [read_stage_meta(run.stage_dir(k)) for k in numbers]
    stages = [Stage(k, stage_dataset(run.stage_dir(k), m), m) for k, m in zip(numbers, metas)]
    pre_path = run.preprocessing
    if not pre_path.is_file():
        raise FileNotFoundError(
            f"{pre_path}: missing; without it real test images cannot be mapped to the input space"
        )
    return ProgressiveSet(
        source=str(source),
        folder=folder,
        stages=stages,
        preprocessor=load_preprocessor(pre_path),
        recipe=yaml.safe_load(run.recipe.read_text()) if run.recipe.is_file() else {},
        results=run.read_results(),
    )
