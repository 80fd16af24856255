"""What a run shares between the engine, the methods and evaluation: data in input space, models, devices."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import torch
from accelerate import Accelerator
from torch import nn

from .augment import DSA
from .config import Recipe
from .data import RealData
from .models import build_model
from .preprocess import Preprocessor


def make_accelerator(**kwargs) -> Accelerator:
    """An Accelerator that also goes multi-process on CPU-only machines under torchrun or `accelerate launch`
    without `--cpu` (Accelerate otherwise runs every process alone there, each redoing the whole job)."""
    launched = int(os.environ.get("WORLD_SIZE", 1)) > 1
    return Accelerator(cpu=launched and not torch.cuda.is_available(), **kwargs)


def default_cache_dir() -> Path:
    return Path(os.environ.get("HF_CONDENSE_CACHE", Path.home() / ".cache" / "hf_condense"))


@dataclass
class RunContext:
    """A run's recipe, accelerator and data (train and test already mapped into the model input space)."""

    recipe: Recipe
    accelerator: Accelerator
    data: RealData
    preprocessor: Preprocessor
    train_x: torch.Tensor = field(repr=False)
    test_x: torch.Tensor = field(repr=False)

    @classmethod
    def build(
        cls, recipe: Recipe, accelerator: Accelerator, data: RealData, preprocessor: Preprocessor | None = None
    ) -> RunContext:
        pre = preprocessor
        if pre is None:
            key = content_key({"dataset": data.source, "preprocess": recipe.preprocess.__dict__, "format": 1})
            pre = Preprocessor.fit_cached(recipe.preprocess, data.train_x, key, cache_dir_of(recipe))
        return cls(recipe, accelerator, data, pre, pre(data.train_x), pre(data.test_x))

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def train_y(self) -> torch.Tensor:
        return self.data.train_y

    @property
    def test_y(self) -> torch.Tensor:
        return self.data.test_y

    @property
    def num_classes(self) -> int:
        return self.data.num_classes

    @cached_property
    def class_indices(self) -> list[torch.Tensor]:
        return self.data.class_indices()

    @cached_property
    def dsa(self) -> DSA:
        return DSA(self.recipe.augment.strategy)

    @property
    def cache_dir(self) -> Path:
        return cache_dir_of(self.recipe)

    def make_model(self, name: str | None = None) -> nn.Module:
        """A freshly initialised network of the recipe (or another timm `name`), on the CPU."""
        from dataclasses import replace

        cfg = self.recipe.model if name is None else replace(self.recipe.model, name=name, kwargs={})
        return build_model(cfg, self.num_classes, self.data.in_chans, self.data.img_size)

    def data_key(self) -> dict:
        """Everything about the real data and its preprocessing that cached artefacts depend on."""
        return {
            "dataset": self.data.source,
            "preprocess": self.recipe.preprocess.__dict__,
            "shape": list(self.train_x.shape),
        }

    def print(self, *args) -> None:
        """Print once per run (the main process of all nodes), not once per node."""
        if self.accelerator.is_main_process:
            print(*args, flush=True)


def cache_dir_of(recipe: Recipe) -> Path:
    """Where experts, ZCA fits and forgetting scores are cached: output.cache_dir, or HF_CONDENSE_CACHE."""
    return Path(recipe.output.cache_dir) if recipe.output.cache_dir else default_cache_dir()


def content_key(obj) -> str:
    """A short stable hash of a JSON-able object (cache keys)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]
