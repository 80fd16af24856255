"""The method contract: what the stage engine hands a distiller (`StageTask`), what it gets back (`StageOutput`),
and what a registry entry declares (`MethodSpec`, `Capabilities`).

A distiller turns one `StageTask` into one `StageOutput` and reads nothing else of the run: not the recipe, only the
task and the run context's data and devices. The engine reads a method's `Capabilities` as data (needs experts,
learns lr, learns labels) and never inspects its class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import torch

from ..core.config import opt, suggest
from ..data.formation import decode, formation_factor_of
from ..models.training import TrainSchedule


@dataclass
class MethodConfig:
    """Base of every method's config; `name` picks the method (a key of `hf_condense.METHODS`)."""

    name: str = opt("random", help="Method name (see hf_condense.METHODS).")

    @classmethod
    def config_for(cls, data: Any, path: str, errors: list[str]) -> type[MethodConfig] | None:
        """The config class that `data` (a method section) parses into: the registry's entry for its name."""
        from . import METHODS

        if data is None:
            data = {}
        if not isinstance(data, dict):
            errors.append(f"{path}: expected a mapping with a 'name' key, got {data!r}")
            return None
        name = data.get("name", MethodConfig.name)
        if name not in METHODS:
            errors.append(
                f"{path}.name: unknown method {name!r}{suggest(str(name), METHODS)}; "
                f"allowed: {', '.join(sorted(METHODS))}"
            )
            return None
        return METHODS[name].config_class


@dataclass(frozen=True)
class Capabilities:
    """What the engine and the outputs need to know about a method."""

    needs_experts: bool = False  # matches expert trajectories: the engine has `prepare_experts(task)` build them first
    learns_lr: bool = False  # stores a learned evaluation lr with each stage (MTT's alpha)
    learns_labels: bool = False  # may store soft labels with each stage
    synthetic: bool = True  # False for coresets, which select real images
    functional: bool = False  # unrolls the network functionally: needs a model without running statistics


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

    def schedule(self, base: TrainSchedule) -> TrainSchedule:
        """The schedule this stage's images are meant for: `base` (the protocol's) with what the method that made
        them declared (`meta["schedule"]`, e.g. RaT-BPTT's Adam without decay)."""
        return replace(base, **self.meta.get("schedule", {}))


def training_union(synsets: list[SynSet]) -> tuple[torch.Tensor, torch.Tensor]:
    """The training sets of several stages, concatenated."""
    xs, ys = zip(*(s.training_set() for s in synsets))
    return torch.cat(xs), torch.cat(ys)


@dataclass(frozen=True)
class Probe:
    """Periodic tests during a stage: every `every` iterations one network, trained on the earlier stages as the
    evaluation's `mode` trains them, trains `epochs` epochs with the current images and reports its accuracy."""

    every: int = 0  # 0: never
    epochs: int = 100
    test_batch_size: int = 1024
    select: str = "last"  # "validation": test on the held-out validation split and keep the best iterate
    mode: str = "progressive"  # the evaluation's mode: the network starts where it leaves the earlier stages


@dataclass
class StageTask:
    """Everything stage `stage` (1-based) may read: its budget, its resolved method config, the earlier stages, the
    scheme's flags, the training schedule of the protocol, the seeds and the real pool. A method reads nothing else of
    the recipe; the stage hash is computed from what the task resolves to."""

    stage: int
    ipc: int
    config: MethodConfig
    previous: list[SynSet]
    conditioning: bool  # earlier stages are fixed inputs of the student
    transition: bool  # match dynamics that start from weights trained on the earlier stages
    boost_beta: float  # earlier stages keep training at lr x beta (0: frozen)
    pool: list[torch.Tensor]  # per class, the real train indices this stage's matching draws on (experts, batches)
    seed: int
    train: TrainSchedule = TrainSchedule()  # the protocol's schedule: transitions, inner trainings, default lr
    run_seed: int = 0  # the run's seed (cache keys of experts and embeddings)
    checkpoint_dir: Path | None = None  # where a long stage keeps its resumable state
    earlier_pools: list[list[torch.Tensor]] = field(default_factory=list)  # the pools of stages 1..stage-1
    probe: Probe = Probe()
    init_pool: list[torch.Tensor] | None = None  # per class, where its initial (or selected) real images come from
    experts: Any = None  # what the distiller's `prepare_experts` built for this stage (methods that need experts)

    @property
    def start_pool(self) -> list[torch.Tensor]:
        """Per class, the real images a stage's images start from (a coreset: are selected from); default `pool`."""
        return self.init_pool if self.init_pool is not None else self.pool

    @property
    def context_set(self) -> list[SynSet]:
        """The earlier stages the student trains on (empty without conditioning)."""
        return self.previous if self.conditioning else []

    @property
    def default_lr(self) -> float:
        """The evaluation lr of a stage whose method learns none."""
        return self.train.lr


@dataclass
class StageOutput:
    stage: SynSet
    previous: list[SynSet] | None = None  # earlier stages, when the method changed them (boosting with beta > 0)
    log: dict[str, Any] = field(default_factory=dict)


class DivergenceError(RuntimeError):
    """A distillation run that diverged (NaN, exploding lr); the message says where the last good state is."""


class Distiller(Protocol):
    """A base method: `distill` produces one stage. One whose capabilities say `needs_experts` also has
    `prepare_experts(task)`, which the engine calls before `distill` and whose result it puts in `task.experts`."""

    def __init__(self, ctx) -> None: ...  # ctx: methods.context.RunContext

    def distill(self, task: StageTask) -> StageOutput: ...


@dataclass(frozen=True)
class MethodSpec:
    """A registry entry: the method's config class, its distiller, its capabilities and its checks.

    The method's name is its key in `hf_condense.METHODS`. `checks(cfg, boost_beta)` returns one line per problem of
    one stage's config (`boost_beta` > 0 when the scheme keeps training earlier stages). `revisions` says, one line
    each, how a release changed the images that the same config makes; their count enters the stage hash, so a run
    folder made before a revision is refused with that line instead of being resumed into different stages.
    """

    config_class: type[MethodConfig]
    distiller: Callable[..., Distiller]  # called with the run's RunContext
    capabilities: Capabilities = Capabilities()
    checks: Callable[[Any, float], list[str]] | None = None
    revisions: tuple[str, ...] = ()
    curriculum_scope: str = "init"  # what a PDD forgetting band restricts in the method's official code (see recipe)
    # stage i of a P-stage run gets stage_config(cfg, i, P, keys its recipe overrides for stage i) (PDD over DATM:
    # each stage its own slice of the matching range); the stage hash then covers the resolved configs
    stage_config: Callable[[Any, int, int, set[str]], Any] | None = None

    @property
    def revision(self) -> int:
        return len(self.revisions)

    def __post_init__(self):
        if self.capabilities.needs_experts and not hasattr(self.distiller, "prepare_experts"):
            raise TypeError(f"{self.distiller!r}: a method that needs experts must define prepare_experts(task)")

    def check(self, cfg: MethodConfig, boost_beta: float = 0.0) -> list[str]:
        return self.checks(cfg, boost_beta) if self.checks else []
