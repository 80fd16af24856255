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


def evaluate_runs(
    stages: Sequence[StageData],
    make_model: Callable[[], nn.Module],
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    cfg: TrainSchedule,
    dsa: DSA | None,
    mode: str,
    seeds: Sequence[int],
    device: torch.device,
    num_classes: int,
    vectorize: bool = False,
    test_batch_size: int = 1024,
    on_epoch: EpochHook | None = None,
) -> list[list[float]]:
    """Evaluation runs over all stages, one per seed; per seed, the test accuracy after each stage. With
    `vectorize` and a buffer-free model the runs train together (`stacked.StackedNets`), else one by one.
    `on_epoch(networks, loss=..., accuracy=...)` after every training epoch (progress, trackers)."""
    dsa = dsa if (cfg.augment and dsa is not None and dsa.enabled) else None  # the protocol's augmentation
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    accs: list[list[float]] = [[] for _ in seeds]
    group = None
    current = None
    for k, stage in enumerate(stages):
        sched = stage.schedule or cfg
        if mode == "union" or group is None:
            models = []
            for s in seeds:
                torch.manual_seed(s)  # union: the same init for every budget of a run; runs differ by seed
                models.append(make_model().to(device))
            stack = vectorize and len(models) > 1 and buffer_free(models[0])
            group = StackedNets(models, sched, stage.lr) if stack else NetGroup(models, sched, stage.lr)
        elif sched.optimizer != current.optimizer:  # a stage meant for another optimiser: a fresh one for it
            group.set_optimizer(sched, stage.lr)
        current = sched
        x, y = _concat(stages[: k + 1] if mode != "sequential" else [stage], num_classes)
        group.fit(x, y, stage.epochs, stage.lr, sched, dsa, generators, device, on_epoch)
        for r, a in enumerate(group.accuracy(test_x, test_y, device, test_batch_size)):
            accs[r].append(a)
    return accs
