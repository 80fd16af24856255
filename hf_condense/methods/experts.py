"""Expert trajectories for trajectory matching: networks trained on real data, one parameter snapshot per epoch.

`hf-condense experts` builds them ahead of time; the stage engine builds the missing ones before a stage starts.
Trajectories are cached as safetensors under a key of everything that changes them, each file
with its parameter names/shapes, key and checksum; a truncated, stale or foreign file is rebuilt, never used.
With several processes, each trains its share of the experts; with `stack` > 1 a process trains its experts in
groups as one vmapped network (vectorized.StackedNets), each with its own initialisation, shuffles and augmentation.

PDD transitions: the experts of stage i start where the stage-(i-1) experts started, trained on the cumulative
synthetic set S1 u ... u S(i-1) at the latest stage's lr, then continue on real data, snapshotting each epoch.
Under a forgetting-score curriculum each level's real epochs see only its stage's examples (PDD section 4.2).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ..core.io import content_key, load_verified, save_verified
from ..models.compiling import describe, should_compile
from ..models.functional import FlatParams, buffer_free
from ..models.stacked import StackedNets
from ..models.training import NetGroup, TrainSchedule
from .base import training_union
from .context import RunContext
from .difficulty import Curriculum, el2n_scores, ranked_by

logger = logging.getLogger("hf_condense.experts")
FORMAT = "hf_condense.trajectory.v1"
EXPERT_SGD = TrainSchedule(momentum=0.0, weight_decay=0.0)  # experts: SGD without momentum or weight decay (MTT)


@dataclass(frozen=True)
class ExpertSettings:
    """How experts are trained (SGD without momentum or weight decay, as in MTT, or GSAM over it)."""

    num_experts: int
    epochs: int  # snapshots 0..epochs are stored
    lr: float
    batch_size: int
    augment: bool
    seed: int = 0  # the run's seed
    stack: int = 1  # experts trained together as one vmapped network (not part of the cache key: same result)
    micro_batch: int | None = None  # examples per forward/backward chunk (None: the CPU rule; not in the key either)
    compile: bool | None = None  # torch.compile the real epochs (None: compiling's rule; not in the key either)
    schedule: TrainSchedule = EXPERT_SGD  # their optimiser on real data: MTT's SGD, or GSAM over it (FTD/DATM/PAD)
    curriculum: Curriculum | None = None  # PAD: the easy-to-hard schedule of their real examples; None: all data

    @property
    def stackable(self) -> bool:
        """Whether experts may train stacked: GSAM's norms are per network, so its experts train one by one."""
        return self.schedule.optimizer == "sgd"


def real_subset(pool: list[torch.Tensor], n: int) -> torch.Tensor | None:
    """A stage's per-class pools as sorted train indices, or None when they cover all `n` train examples."""
    idx = torch.cat(list(pool)).sort().values
    return None if len(idx) == n else idx


def subset_key(key: str, real: torch.Tensor | None) -> str:
    """`key` for experts whose real epochs see only the examples `real` (unchanged for the whole train split)."""
    return key if real is None else content_key([key, hashlib.sha256(real.numpy().tobytes()).hexdigest()[:16]])


def save_trajectory(path: Path, traj: torch.Tensor, flat: FlatParams, key: str, extra: dict | None = None) -> None:
    meta = {
        "format": FORMAT,
        "epochs": str(len(traj) - 1),
        **flat.metadata(),
        **{k: json.dumps(v) for k, v in (extra or {}).items()},
    }
    save_verified({"trajectory": traj}, path, key, meta)


def load_trajectory(path: Path, key: str, epochs: int, size: int) -> torch.Tensor | None:
    """The trajectory stored at `path`, or None (with a warning saying why) if it is missing or unusable."""
    loaded = load_verified(path, key, "expert")
    if loaded is None:
        return None
    tensors, meta = loaded
    traj = tensors.get("trajectory")
    why = None
    if meta.get("format") != FORMAT or traj is None:
        why = f"it is not a format-{FORMAT} trajectory"
    elif traj.ndim != 2 or traj.shape[1] != size or traj.shape[0] < epochs + 1:
        why = f"its shape {tuple(traj.shape)} does not fit {epochs + 1} snapshots of {size} parameters"
    if why:
        logger.warning(f"expert cache file {path} is not used: {why}; rebuilding it")
        return None
    return traj[: epochs + 1]


class ExpertStore:
    """Trains, caches and serves expert trajectories for a run (train=False: serves cached ones only, for inspecting
    a finished run without retraining anything)."""

    def __init__(self, ctx: RunContext, train: bool = True):
        self.ctx = ctx
        self.train = train
        self.flat = FlatParams(ctx.make_model())
        self._loaded: dict[Path, torch.Tensor] = {}

    def base_key(self, s: ExpertSettings) -> str:
        return content_key(self.base_settings(s))

    def base_settings(self, s: ExpertSettings) -> dict:
        """Everything that shapes base experts, in the order a shared expert repo is compared with a recipe (the
        first differing one is named): the data and its preprocessing, the network, the augmentation, the training."""
        return {
            "data": self.ctx.data_key(),
            "model": self.ctx.model.__dict__,
            "augment": self.ctx.augment,
            "lr": s.lr,
            "batch": s.batch_size,
            "aug": s.augment,
            "seed": s.seed,
            "format": FORMAT,
            **({"optimizer": s.schedule.key()} if s.schedule.optimizer != "sgd" else {}),  # SGD experts keep their key
            **({"curriculum": dataclasses.asdict(s.curriculum)} if s.curriculum else {}),
        }

    def expert_path(self, key: str, e: int) -> Path:
        """Where expert e of the experts under `key` is cached."""
        return self.folder(key) / f"expert_{e:04d}.safetensors"

    def folder(self, key: str) -> Path:
        return self.ctx.cache_dir / "experts" / key

    def build(
        self,
        s: ExpertSettings,
        key: str,
        starts: list[torch.Tensor] | None = None,
        pretrain=None,
        real: torch.Tensor | None = None,
        desc: str = "experts",
    ) -> list[Path]:
        """Ensure experts 0..n-1 exist under `key`; process p trains experts p, p+P, ...; returns their paths.
        `real`: the train indices their real epochs use (None: all); `desc` names the phase."""
        folder = self.folder(key)
        paths = [self.expert_path(key, e) for e in range(s.num_experts)]
        acc = self.ctx.accelerator
        todo = [e for e in range(s.num_experts) if load_trajectory(paths[e], key, s.epochs, self.flat.size) is None]
        if todo and not self.train:
            raise FileNotFoundError(f"{folder}: {len(todo)} of {s.num_experts} expert trajectories are not cached")
        mine = todo[acc.process_index :: acc.num_processes]
        if todo:
            epochs = s.epochs + (pretrain[3] if pretrain is not None else 0)
            pre = f" ({pretrain[3]} on the earlier stages first)" if pretrain is not None else ""
            stack = s.stack if buffer_free(self.flat.model) and s.stackable else 1
            x, n_real = self.ctx.train_x, len(self.ctx.train_x) if real is None else len(real)
            examples = len(mine) * s.epochs * n_real
            compile = stack == 1 and should_compile(s.compile, self.ctx.device, examples, self.flat.model, x[:1])
            detail = (
                f"{len(todo)} of {s.num_experts} expert(s) x {epochs} epoch(s){pre} into {folder}, "
                f"{describe(s.compile, compile)}"
            )
            with self.ctx.progress(desc, len(mine) * epochs, "epoch", detail=detail) as bar:
                for i in range(0, len(mine), stack):
                    group = mine[i : i + stack]
                    trajs = self.train_group(group, s, key, starts, pretrain, real, bar.update, compile)
                    for e, traj in zip(group, trajs):
                        save_trajectory(paths[e], traj, self.flat, key)
        acc.wait_for_everyone()
        return paths

    def init_expert(self, e: int, key: str, starts: list[torch.Tensor] | None):
        """Expert e's network (its seeded initialisation, or its start weights) and its generator."""
        seed = int(content_key([key, e]), 16) % (2**31)
        torch.manual_seed(seed)
        model = self.ctx.make_model().to(self.ctx.device)
        if starts is not None:
            FlatParams(model).load_into(starts[e].to(self.ctx.device))
        return model, torch.Generator().manual_seed(seed)

    def train_group(
        self, experts: list[int], s: ExpertSettings, key: str, starts, pretrain, real, on_epoch, compile: bool = False
    ) -> list[torch.Tensor]:
        """The experts' trajectories: optional start weights and synthetic pre-training (PDD transition), then real
        epochs with a snapshot each. One expert trains alone; several as one stacked network (same trajectories up to
        float rounding); `compile`: the real epochs through torch.compile. `on_epoch(experts, loss=..., accuracy=...)`
        after every epoch."""
        ctx = self.ctx
        models, gens = zip(*(self.init_expert(e, key, starts) for e in experts))
        group = (StackedNets if len(models) > 1 else NetGroup)(models, s.schedule, s.lr)
        if pretrain is not None:
            x, y, lr, epochs, ev = pretrain
            group.set_optimizer(ev, lr)
            group.fit(x, y, epochs, lr, ev, ctx.dsa if ev.augment else None, gens, ctx.device, on_epoch)
            group.set_optimizer(s.schedule, s.lr)
        dsa = ctx.dsa if s.augment else None
        x, y = (ctx.train_x, ctx.train_y) if real is None else (ctx.train_x[real], ctx.train_y[real])
        ranked = self.ranked(s, real)
        snaps = [group.flat_params().cpu()]
        for e in range(s.epochs):
            if ranked is not None:  # PAD: this epoch's share of each class, easy to hard
                idx = s.curriculum.subset(ranked, e)
                x, y = ctx.train_x[idx], ctx.train_y[idx]
            values = group.train_epoch(x, y, s.batch_size, dsa, gens, ctx.device, s.micro_batch, compile)
            on_epoch(len(models), **values)
            snaps.append(group.flat_params().cpu())  # fresh copies: never aliases of the live parameters
        return list(torch.stack(snaps, dim=1))

    def ranked(self, s: ExpertSettings, real: torch.Tensor | None) -> list[torch.Tensor] | None:
        """With a curriculum, each class's train indices (of `real`, default all) easiest first; else None."""
        if s.curriculum is None:
            return None
        scores = el2n_scores(self.ctx, s.curriculum.networks, s.curriculum.epochs, s.seed)
        return ranked_by(scores, self.ctx.train_y, real)

    def trajectory(self, path: Path, key: str, epochs: int) -> torch.Tensor:
        if path not in self._loaded:
            if len(self._loaded) >= 16:
                self._loaded.pop(next(iter(self._loaded)))
            traj = load_trajectory(path, key, epochs, self.flat.size)
            if traj is None:
                raise RuntimeError(f"expert trajectory {path} disappeared or changed during the run")
            self._loaded[path] = traj
        return self._loaded[path]

    def base_experts(self, s: ExpertSettings, real: torch.Tensor | None = None) -> tuple[str, list[Path]]:
        """(key, paths) of the experts trained from scratch on real data (`real`: the train indices; None: all)."""
        key = subset_key(self.base_key(s), real)
        return key, self.build(s, key, real=real)

    def stage_experts(
        self,
        s: ExpertSettings,
        stage_sets: list,
        transition_epochs: int,
        ev: TrainSchedule,
        count: int | None = None,
        reals: list[torch.Tensor | None] | None = None,
    ):
        """(key, paths) of the experts for a stage whose earlier stages are `stage_sets` (empty for stage 1).

        Without earlier stages these are the base experts; otherwise each starts from the previous level's start
        point, trained on the cumulative synthetic set (the chain mirrors progressive evaluation); later levels keep
        the first `count` experts (default: all). `reals[l]`: the train indices level l's real epochs use (None: all;
        one per level, 0..len(stage_sets)).
        """
        reals = reals or [None] * (len(stage_sets) + 1)
        key, paths = self.base_experts(s, reals[0])
        if stage_sets and count is not None:
            s = replace(s, num_experts=min(count, s.num_experts))
            paths = paths[: s.num_experts]
        for level in range(1, len(stage_sets) + 1):
            union = stage_sets[:level]
            x, y = training_union(union)
            lr, sched = float(union[-1].lr), union[-1].schedule(ev)  # the schedule those images are meant for
            starts = [self.trajectory(p, key, 0)[0] for p in paths]
            syn_hash = hashlib.sha256(x.numpy().tobytes() + y.numpy().tobytes()).hexdigest()[:16]
            key = subset_key(content_key([key, syn_hash, lr, transition_epochs, sched.key()]), reals[level])
            pretrain = (x, y, lr, transition_epochs, sched)
            desc = f"transition experts after stage {level}"
            paths = self.build(s, key, starts=starts, pretrain=pretrain, real=reals[level], desc=desc)
        return key, paths
