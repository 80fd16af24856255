"""Evaluation runs: fresh networks trained on staged sets under the protocol (progressive, union or sequential), one
per seed, side by side or stacked under vmap."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data.augment import DSA
from .functional import buffer_free
from .stacked import StackedNets
from .training import EpochHook, NetGroup, TrainSchedule


@dataclass
class StageData:
    """What evaluation needs of one stage: its images and labels, and its training schedule."""

    images: torch.Tensor
    labels: torch.Tensor  # int64 class ids, or float32 soft labels (N x classes)
    lr: float
    epochs: int
    schedule: TrainSchedule | None = None  # the stage's own (optimiser, decay, ...); None: the evaluation's


def protocol_seeds(run_seed: int, salt: int, runs: int) -> list[int]:
    """The evaluation networks' seeds of a run: `salt` keeps the sets apart (distilled 0, random real 1, periodic
    tests 2, whole data 99), so that each reference gets networks of its own."""
    return [10_000 * (salt + 1) + 97 * run_seed + r for r in range(runs)]


def _concat(stages: Sequence[StageData], num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Union of stages; hard labels become one-hot when any stage has soft labels."""
    if all(s.labels.dtype == torch.long for s in stages):
        return torch.cat([s.images for s in stages]), torch.cat([s.labels for s in stages])
    soft = [s.labels if s.labels.dtype != torch.long else F.one_hot(s.labels, num_classes).float() for s in stages]
    return torch.cat([s.images for s in stages]), torch.cat(soft)


class ProtocolRuns:
    """Fresh networks, one per seed, trained stage by stage under the protocol (progressive, union or sequential).

    `add(stage)` trains them on the next stage as the mode says; between stages the whole object can be copied
    (`copy.deepcopy`: networks, optimiser states and generators), so that several continuations share the training
    of the stages before them (the periodic tests of a stage start from the earlier stages' networks)."""

    def __init__(
        self,
        make_model: Callable[[], nn.Module],
        cfg: TrainSchedule,
        dsa: DSA | None,
        mode: str,
        seeds: Sequence[int],
        device: torch.device,
        num_classes: int,
        vectorize: bool = False,
    ):
        self.make_model, self.cfg, self.mode, self.seeds = make_model, cfg, mode, list(seeds)
        self.dsa = dsa if (cfg.augment and dsa is not None and dsa.enabled) else None  # the protocol's augmentation
        self.device, self.num_classes, self.vectorize = device, num_classes, vectorize
        self.generators = [torch.Generator().manual_seed(s) for s in self.seeds]
        self.stages: list[StageData] = []
        self.group = None
        self.current: TrainSchedule | None = None

    def add(self, stage: StageData, on_epoch: EpochHook | None = None) -> None:
        """Train every network on `stage` (with the stages before it, as the mode says)."""
        sched = stage.schedule or self.cfg
        if self.mode == "union" or self.group is None:
            models = []
            for s in self.seeds:
                torch.manual_seed(s)  # union: the same init for every budget of a run; runs differ by seed
                models.append(self.make_model().to(self.device))
            stack = self.vectorize and len(models) > 1 and buffer_free(models[0])
            self.group = StackedNets(models, sched, stage.lr) if stack else NetGroup(models, sched, stage.lr)
        elif sched.optimizer != self.current.optimizer:  # a stage meant for another optimiser: a fresh one for it
            self.group.set_optimizer(sched, stage.lr)
        self.current = sched
        self.stages.append(stage)
        x, y = _concat(self.stages if self.mode != "sequential" else [stage], self.num_classes)
        self.group.fit(x, y, stage.epochs, stage.lr, sched, self.dsa, self.generators, self.device, on_epoch)

    def prepare(self, stages: Sequence[StageData]) -> None:
        """Bring the networks to where they stand after `stages`: trained on them in turn, or, in union mode, where
        every stage retrains fresh networks on the whole union, only holding them for the next one."""
        if self.mode == "union":
            self.stages.extend(stages)
        else:
            for stage in stages:
                self.add(stage)

    def accuracy(self, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> list[float]:
        """Per network, its accuracy on (x, y) now."""
        return self.group.accuracy(x, y, self.device, batch_size)


def evaluate_runs(
    stages: Sequence[StageData],
    runs: ProtocolRuns,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    test_batch_size: int = 1024,
    on_epoch: EpochHook | None = None,
) -> list[list[float]]:
    """Train fresh `runs` over all stages; per seed, the test accuracy after each stage. Runs made with `vectorize`
    and a buffer-free model train together (`stacked.StackedNets`), else one by one. `on_epoch(networks,
    loss=..., accuracy=...)` after every training epoch (progress, trackers)."""
    accs: list[list[float]] = [[] for _ in runs.seeds]
    for stage in stages:
        runs.add(stage, on_epoch)
        for r, a in enumerate(runs.accuracy(test_x, test_y, test_batch_size)):
            accs[r].append(a)
    return accs
