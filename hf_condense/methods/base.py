"""What every distiller provides, and what the stage engine hands it.

A distiller turns one `StageTask` into one `StageOutput`. The engine reads a method's `Capabilities` as data
(needs experts, learns lr, learns labels) and never inspects its class.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch

from ..config import MethodConfig
from ..formation import decode, formation_factor_of
from ..io import save_safetensors

if TYPE_CHECKING:
    from ..context import RunContext


@dataclass(frozen=True)
class Capabilities:
    """What the engine and the outputs need to know about a method."""

    learns_lr: bool = False  # stores a learned evaluation lr with each stage (MTT's alpha)
    learns_labels: bool = False  # stores soft labels with each stage
    synthetic: bool = True  # False for coresets, which select real images


@dataclass
class SynSet:
    """One stage's images (in the model input space) and labels, with the lr evaluation should use."""

    images: torch.Tensor
    labels: torch.Tensor
    lr: float
    soft_labels: torch.Tensor | None = None
    indices: torch.Tensor | None = None  # real train indices, for coresets
    meta: dict[str, Any] = field(default_factory=dict)

    def training_labels(self) -> torch.Tensor:
        return self.soft_labels if self.soft_labels is not None else self.labels

    @property
    def formation_factor(self) -> int:
        """IDC multi-formation: each stored image decodes into factor^2 training images (1: stored as trained)."""
        return formation_factor_of(self.meta)

    def training_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The images and (soft) labels a network trains on: multi-formation stages decoded."""
        return decode(self.images, self.training_labels(), self.formation_factor)


def training_union(synsets: list[SynSet]) -> tuple[torch.Tensor, torch.Tensor]:
    """The training sets of several stages, concatenated."""
    xs, ys = zip(*(s.training_set() for s in synsets))
    return torch.cat(xs), torch.cat(ys)


@dataclass
class StageTask:
    """Everything stage `stage` (1-based) needs: its budget, config, the earlier stages and the scheme's flags."""

    stage: int
    ipc: int
    config: MethodConfig
    previous: list[SynSet]
    conditioning: bool  # earlier stages are fixed inputs of the student
    transition: bool  # match dynamics that start from weights trained on the earlier stages
    boost_beta: float  # earlier stages keep training at lr x beta (0: frozen)
    pool: list[torch.Tensor]  # per class, the real train indices this stage may draw from
    seed: int
    checkpoint_dir: Path | None = None  # where a long stage keeps its resumable state
    earlier_pools: list[list[torch.Tensor]] = field(default_factory=list)  # the pools of stages 1..stage-1

    @property
    def context_set(self) -> list[SynSet]:
        """The earlier stages the student trains on (empty without conditioning)."""
        return self.previous if self.conditioning else []


@dataclass
class StageOutput:
    stage: SynSet
    previous: list[SynSet] | None = None  # earlier stages, when the method changed them (boosting with beta > 0)
    log: dict[str, Any] = field(default_factory=dict)


class DivergenceError(RuntimeError):
    """A distillation run that diverged (NaN, exploding lr); the message says where the last good state is."""


class StateFile:
    """A resumable in-stage checkpoint: named tensors, optimiser momentum, the generator state and the iteration.

    `identity` (a JSON-able dict) must match on restore; a stale or unreadable file is ignored with a warning.
    """

    def __init__(self, folder: Path | None, name: str, identity: dict, writable: bool = True):
        self.path = Path(folder) / f"{name}.safetensors" if folder is not None else None
        self.identity = json.dumps(identity, sort_keys=True, default=str)
        self.writable = writable

    @staticmethod
    def _buffers(optimizers: dict[str, torch.optim.Optimizer]):
        for name, o in optimizers.items():
            for gi, group in enumerate(o.param_groups):
                for pi, p in enumerate(group["params"]):
                    yield f"opt.{name}.{gi}.{pi}", o, p

    def save(
        self,
        tensors: dict[str, torch.Tensor],
        optimizers: dict[str, torch.optim.Optimizer],
        g: torch.Generator,
        iteration: int,
    ) -> Path | None:
        if self.path is None or not self.writable:
            return self.path
        data = {f"t.{k}": v.detach() for k, v in tensors.items()}
        for key, o, p in self._buffers(optimizers):
            for name, value in o.state.get(p, {}).items():  # momentum buffers, Adam moments and step
                if torch.is_tensor(value):
                    data[f"{key}.{name}"] = value
        data["rng"] = g.get_state()
        save_safetensors(data, self.path, metadata={"identity": self.identity, "iteration": str(iteration)})
        return self.path

    def restore(
        self, tensors: dict[str, torch.Tensor], optimizers: dict[str, torch.optim.Optimizer], g: torch.Generator
    ) -> int:
        """Load the checkpoint into the given tensors/optimisers/generator; returns the iteration to resume at."""
        if self.path is None or not self.path.is_file():
            return 0
        from safetensors import safe_open

        try:
            with safe_open(str(self.path), "pt") as f:
                meta = f.metadata() or {}
                data = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:
            logging.getLogger("hf_condense").warning(f"checkpoint {self.path} is unreadable ({e}); starting over")
            return 0
        if meta.get("identity") != self.identity:
            logging.getLogger("hf_condense").warning(f"checkpoint {self.path} belongs to other settings; ignored")
            return 0
        with torch.no_grad():
            for k, v in tensors.items():
                v.copy_(data[f"t.{k}"])
        for key, o, p in self._buffers(optimizers):
            for name in [k[len(key) + 1 :] for k in data if k.startswith(f"{key}.")]:
                value = data[f"{key}.{name}"]
                o.state[p][name] = value if name == "step" else value.to(p.device)
        g.set_state(data["rng"])
        return int(meta["iteration"])


class Distiller(Protocol):
    """A base method: `distill` produces one stage."""

    def __init__(self, ctx: RunContext) -> None: ...

    def distill(self, task: StageTask) -> StageOutput: ...


@dataclass(frozen=True)
class MethodSpec:
    """A registry entry: the method's config class, its distiller, its capabilities and recipe checks."""

    config_class: type[MethodConfig]
    distiller: Callable[[RunContext], Distiller]
    capabilities: Capabilities = Capabilities()
    checks: Callable[[Any], list[str]] | None = None

    def check(self, recipe) -> list[str]:
        return self.checks(recipe) if self.checks else []
