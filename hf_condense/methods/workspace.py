"""The loop's "init images" hook: a stage's learnable images (random or herding-selected real images of its pool,
with IDC's multi-formation encoding, or noise) beside the earlier stages the student trains on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from ..data.formation import decode, encode
from .base import StageOutput, StageTask, SynSet
from .coreset import embedding_features, herding

InitMode = Literal["real", "herding", "noise"]
INIT_HELP = "Initial images: random real images, herding-selected real images, or Gaussian noise."


def init_images(
    ctx, task: StageTask, mode: str, g: torch.Generator, factor: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """ipc images per class: random or herding-selected real images from the stage's pool (with a multi-formation
    factor, each made of factor^2 downsampled real images), Gaussian noise, or unit-norm noise."""
    labels = torch.arange(ctx.num_classes).repeat_interleave(task.ipc)
    shape = (len(labels), *ctx.train_x.shape[1:])
    if mode == "noise":
        return torch.randn(shape, generator=g), labels
    if mode == "unit_noise":  # RaT-BPTT: Gaussian noise scaled to unit norm per image
        x = torch.randn(shape, generator=g)
        return x / x.flatten(1).norm(dim=1).view(-1, *[1] * (x.ndim - 1)), labels
    n = task.ipc * factor**2
    if mode == "herding":  # greedy mean matching in the features of a network trained one epoch on real data
        feats, none = embedding_features(ctx, 1, task.run_seed), torch.empty(0, dtype=torch.long)
        picks = [pool[herding(feats[pool], n, none)] for pool in task.start_pool]
    else:
        picks = [pool[torch.randperm(len(pool), generator=g)[:n]] for pool in task.start_pool]
    return torch.cat([encode(ctx.train_x[p], factor) for p in picks]), labels


@dataclass
class Workspace:
    """The stage's learnable images (and labels), beside the earlier stages the student also trains on."""

    images: torch.Tensor  # requires grad
    labels: torch.Tensor
    ctx_x: torch.Tensor  # earlier stages (requires grad only when boosting)
    ctx_y: torch.Tensor
    boosting: bool
    factor: int = 1  # multi-formation: each stored image trains as factor^2 decoded images

    @classmethod
    def build(
        cls,
        ctx,
        task: StageTask,
        init: str,
        g: torch.Generator,
        factor: int = 1,
        initial: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> Workspace:
        """The stage's images from `init_images` (or `initial`, images and labels a method chose itself) beside the
        earlier stages of the task's context set."""
        dev = ctx.device
        images, labels = initial if initial is not None else init_images(ctx, task, init, g, factor)
        context = task.context_set
        boosting = task.boost_beta > 0 and bool(context)  # idc.check refuses boosting multi-formation stages
        pairs = [(s.images, s.labels) if boosting else decode(s.images, s.labels, s.formation_factor) for s in context]
        ctx_x = torch.cat([x for x, _ in pairs]) if pairs else images.new_zeros((0, *images.shape[1:]))
        ctx_y = torch.cat([y for _, y in pairs]) if pairs else labels.new_zeros(0)
        ctx_x = ctx_x.to(dev).requires_grad_(boosting)
        return cls(images.to(dev).requires_grad_(True), labels.to(dev), ctx_x, ctx_y.to(dev), boosting, factor)

    def decoded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This stage's images and labels as a network trains on them."""
        return decode(self.images, self.labels, self.factor)

    @property
    def all_x(self) -> torch.Tensor:
        return torch.cat([self.ctx_x, self.decoded()[0]])

    @property
    def all_y(self) -> torch.Tensor:
        return torch.cat([self.ctx_y, self.decoded()[1]])

    def class_x(self, c: int) -> torch.Tensor:
        """Class c's training images: earlier stages' then this stage's."""
        mine = self.labels == c
        return torch.cat([self.ctx_x[self.ctx_y == c], decode(self.images[mine], self.labels[mine], self.factor)[0]])

    def param_groups(self, lr: float, beta: float) -> list[dict]:
        """Optimiser groups: the stage's images at lr, earlier blocks at lr x beta when boosting."""
        groups = [{"params": [self.images], "lr": lr}]
        if self.boosting:
            groups.append({"params": [self.ctx_x], "lr": lr * beta})
        return groups

    def learnable(self) -> list[torch.Tensor]:
        return [self.images, self.ctx_x] if self.boosting else [self.images]

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"images": self.images, "ctx_x": self.ctx_x}

    def output(self, task: StageTask, lr: float, log: dict, soft_labels: torch.Tensor | None = None) -> StageOutput:
        """The stage's images as a SynSet, with the earlier stages when boosting moved them."""
        meta = {"formation_factor": self.factor} if self.factor > 1 else {}
        stage = SynSet(self.images.detach().cpu(), self.labels.cpu(), lr=lr, soft_labels=soft_labels, meta=meta)
        return StageOutput(stage, previous=self.previous(task), log=log)

    def previous(self, task: StageTask) -> list[SynSet] | None:
        """The earlier stages as boosting left them (None when they did not move)."""
        if not self.boosting:
            return None
        out, offset = [], 0
        for s in task.previous:
            n = len(s.images)
            out.append(SynSet(self.ctx_x[offset : offset + n].detach().cpu(), s.labels, s.lr, meta=s.meta))
            offset += n
        return out
