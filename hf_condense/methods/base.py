"""What every distiller provides, and what the stage engine hands it.

A distiller turns one `StageTask` into one `StageOutput`. The engine reads a method's `Capabilities` as data
(needs experts, learns lr, learns labels) and never inspects its class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import torch

from ..config import MethodConfig

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

    @property
    def context_set(self) -> list[SynSet]:
        """The earlier stages the student trains on (empty without conditioning)."""
        return self.previous if self.conditioning else []


@dataclass
class StageOutput:
    stage: SynSet
    previous: list[SynSet] | None = None  # earlier stages, when the method changed them (boosting with beta > 0)
    log: dict[str, Any] = field(default_factory=dict)


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
