"""DATM: Towards Lossless Dataset Distillation via Difficulty-Aligned Trajectory Matching (Guo et al., ICLR 2024),
with PAD's parameter selection (Li et al., 2024) as an option.

MTT's loop (methods/mtt.py) with DATM's changes, as its official code (NUS-HPC-AI-Lab/DATM) has them:
- images start from real images that the experts' last epoch classifies correctly (`init: correct`): per class a
  shuffled scan in batches of 256 with the first expert, then the next ones while the class has too few;
- labels are learned: logits initialised to the mean final-epoch logits of the experts that classify the image
  correctly (with another init: the first expert's logits), trained through the unroll by SGD (lr_label, momentum
  label_momentum); the student trains on their softmax with soft cross-entropy, and the stage stores that softmax as
  its soft labels (evaluation, transitions and replay train on them);
- the start epoch's upper bound grows over the iterations (sequential generation): from initial_max_start_epoch to
  max_start_epoch by iteration expansion_iterations, the lower bound fixed;
- an iteration whose matching loss exceeds `threshold` updates nothing (no optimiser steps);
- its experts train with GSAM over SGD (`expert_optimizer: gsam`, models/sam.py), as the FTD buffers it uses;
- PAD's data selection: the experts' easy-to-hard EL2N curriculum (`expert_curriculum: el2n`, methods/difficulty.py);
- PAD's parameter selection: `match_from` drops the shallowest fraction of the flattened parameters from both norms
  of the matching loss (the depth rule of PAD's paper, cut by element count as its code did).
Earlier stages of a PDD run keep their labels (soft when they were learned) frozen with their images. PDD over DATM
(new here: no public code combines them) gives stage i of P its own slice of the start range by default
(`stage_ranges: split`), the same intuition as DATM's: later, larger sets match later parts of training.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch
import torch.nn.functional as F

from ..core.config import RecipeError, opt
from ..models.functional import FlatParams
from .base import Capabilities, MethodSpec, StageTask
from .mtt import MTTConfig, MTTDistiller, StudentLabels, expert_settings
from .mtt import check as mtt_check
from .workspace import INIT_HELP, Workspace

SCAN_BATCH = 256  # images a correct-classification scan passes through an expert at once (the official batch)


@dataclass
class DATMConfig(MTTConfig):
    """DATM's settings (defaults: its CIFAR-10 IPC 10 config, ConvIN/IPC10.yaml; PAD's options off)."""

    iterations: int = opt(10000, min=1, help="Distillation iterations per stage.")
    syn_steps: int = opt(80, min=1, help="Student SGD steps per iteration (N).")
    max_start_epoch: int = opt(
        20, min=1, help="The start epoch's final upper bound (exclusive; DATM's max_start_epoch, T+)."
    )
    lr_img: float = opt(100.0, gt=0, help="SGD lr (momentum 0.5) of the images.")
    batch_syn: int | None = opt(
        100,
        min=1,
        help="Synthetic images per student step, drawn from the student's whole set (DATM's configs set it; None: "
        "classes x this stage's IPC).",
    )
    expert_optimizer: Literal["sgd", "gsam"] = opt(
        "gsam",
        help="The experts' optimiser on real data: gsam (DATM's buffers: GSAM over SGD, rho 0.01, alpha 0.4), or sgd "
        "(MTT's buffers).",
        added=True,
    )
    init: Literal["correct", "real", "herding", "noise"] = opt(
        "correct",
        help="correct: random real images that the experts' last epoch classifies correctly (DATM's "
        f"samples_predicted_correctly). {INIT_HELP}",
    )
    initial_max_start_epoch: int | None = opt(
        10,
        min=1,
        help="Sequential generation: the start epoch's upper bound at iteration 0 (DATM's current_max_start_epoch, "
        "T), rising to max_start_epoch; None: max_start_epoch throughout.",
    )
    expansion_iterations: int = opt(
        1000,
        min=1,
        help="Sequential generation: the iteration at which the upper bound reaches max_start_epoch (DATM's "
        "expansion_end_epoch, which counts iterations).",
    )
    stage_ranges: Literal["split", "same"] = opt(
        "split",
        help="PDD over DATM: split gives stage i of P the i-th of P equal slices of [min_start_epoch, "
        "max_start_epoch), its sequential generation scaled into the slice (a stage whose stages.overrides set the "
        "range keeps it); same: every stage the whole range.",
    )
    learn_labels: bool = opt(True, help="Learn the soft labels through the unroll (off: keep the experts' logits).")
    lr_label: float = opt(2.0, gt=0, help="SGD lr of the label logits (DATM's lr_y).")
    label_momentum: float = opt(0.9, min=0, max=1, help="SGD momentum of the label logits (DATM's Momentum_y).")
    threshold: float | None = opt(
        1.0, gt=0, help="An iteration whose matching loss exceeds this updates nothing (None: never skip)."
    )
    match_from: float = opt(
        0.0,
        min=0,
        help="PAD's parameter selection: the fraction of the flattened parameters, shallowest first, left out of "
        "the matching loss, in [0, 1) (PAD's Table 7: 0.25 at CIFAR-10 IPC 10 and 50).",
    )


class DATMDistiller(MTTDistiller):
    """MTT's loop with DATM's initialisation, learned soft labels, growing start range and skipping threshold."""

    name = "datm"
    _finals: tuple = (None, [])  # ((experts key, stage), their last snapshots)

    def finals(self, task: StageTask) -> list[torch.Tensor]:
        """The last snapshot of each of the stage's experts (what DATM classifies and labels with), read once a
        stage."""
        key, paths = task.experts
        if self._finals[0] != (key, task.stage):
            epochs = expert_settings(task.config, task.run_seed).epochs
            self._finals = (key, task.stage), [self.store.trajectory(p, key, epochs)[-1].clone() for p in paths]
        return self._finals[1]

    @torch.no_grad()
    def initial_images(self, task: StageTask, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor] | None:
        cfg: DATMConfig = task.config
        if cfg.init != "correct":
            return None
        ctx, net = self.ctx, FlatParams(self.ctx.make_model().to(self.ctx.device))
        finals = self.finals(task)
        picks = []
        for c, pool in enumerate(task.start_pool):
            order = pool[torch.randperm(len(pool), generator=g)]
            chosen = classified_as(c, order, task.ipc, finals, net, ctx)
            if len(chosen) < task.ipc:
                raise RecipeError(
                    [
                        f"method.init: 'correct' found {len(chosen)} of {task.ipc} images of class {c} that the "
                        f"{len(finals)} experts classify correctly (stage {task.stage}); use more "
                        "method.num_experts, or method.init: real"
                    ]
                )
            picks.append(torch.tensor(chosen, dtype=torch.long))
        labels = torch.arange(ctx.num_classes).repeat_interleave(task.ipc)
        return ctx.train_x[torch.cat(picks)], labels

    @torch.no_grad()
    def initial_logits(self, task: StageTask, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """DATM's label init: per image, the mean final-epoch logits of the experts that classify it correctly
        (`init: correct`; an image no expert gets right keeps the first expert's), else the first expert's logits."""
        cfg: DATMConfig = task.config
        net, dev = FlatParams(self.ctx.make_model().to(self.ctx.device)), self.ctx.device
        finals = self.finals(task)
        outs = [torch.cat([net(t.to(dev), x) for x in images.split(SCAN_BATCH)]) for t in finals]
        if cfg.init != "correct":
            return outs[0]
        right = torch.stack([o.argmax(1) == labels for o in outs]).float()  # experts x images
        total = sum(o * r[:, None] for o, r in zip(outs, right, strict=True))
        count = right.sum(0)[:, None]
        return torch.where(count > 0, total / count.clamp(min=1), outs[0])

    def student_labels(self, task: StageTask, ws: Workspace) -> StudentLabels:
        cfg: DATMConfig = task.config
        k = self.ctx.num_classes
        logits = self.initial_logits(task, ws.images.detach(), ws.labels).requires_grad_(cfg.learn_labels)
        earlier = [s.training_set()[1] for s in task.context_set]
        frozen = torch.cat([y if y.is_floating_point() else F.one_hot(y, k).float() for y in earlier] or [logits[:0]])
        frozen = frozen.to(self.ctx.device)
        optimizers = {}
        if cfg.learn_labels:
            optimizers["label"] = torch.optim.SGD([logits], lr=cfg.lr_label, momentum=cfg.label_momentum)
        return StudentLabels(
            targets=lambda: torch.cat([frozen, logits.softmax(1)]),
            state={"label_logits": logits},
            optimizers=optimizers,
            soft=lambda: logits.detach().softmax(1).cpu(),
        )

    def start_bound(self, cfg: DATMConfig, it: int) -> int:
        """Sequential generation: initial + int((max - initial) x it / expansion_iterations), capped at max."""
        if cfg.initial_max_start_epoch is None:
            return cfg.max_start_epoch
        low, high = cfg.initial_max_start_epoch, cfg.max_start_epoch
        return min(high, low + int((high - low) * it / cfg.expansion_iterations))

    def matched_from(self, cfg: DATMConfig, net: FlatParams) -> int:
        return int(cfg.match_from * net.size)

    def skip_above(self, cfg: DATMConfig) -> float | None:
        return cfg.threshold


@torch.no_grad()
def classified_as(c: int, order: torch.Tensor, n: int, finals: list[torch.Tensor], net: FlatParams, ctx) -> list[int]:
    """The first `n` train indices of `order` that the experts classify as class c: the first expert scans them in
    batches of SCAN_BATCH, each next one what the earlier ones did not pick (DATM's samples_predicted_correctly)."""
    chosen: list[int] = []
    for theta in finals:
        left = order[~torch.isin(order, torch.tensor(chosen, dtype=torch.long))]
        for batch in left.split(SCAN_BATCH):
            pred = net(theta.to(ctx.device), ctx.train_x[batch].to(ctx.device)).argmax(1).cpu()
            chosen += batch[pred == c].tolist()[: n - len(chosen)]
            if len(chosen) == n:
                return chosen
    return chosen


RANGE_KEYS = {"min_start_epoch", "max_start_epoch", "initial_max_start_epoch"}


def stage_range(cfg: DATMConfig, stage: int, count: int, overridden: set[str]) -> DATMConfig:
    """PDD over DATM: stage `stage` of `count` matches the stage-th slice of the start range, as DATM matches early
    trajectories for small sets and later ones for larger; the experts still train the whole range's epochs."""
    if cfg.stage_ranges == "same" or count == 1 or overridden & RANGE_KEYS:
        return cfg
    low, high = cfg.min_start_epoch, cfg.max_start_epoch
    span = high - low
    lo, hi = low + span * (stage - 1) // count, low + span * stage // count
    initial = cfg.initial_max_start_epoch
    if initial is not None and low < initial <= high:  # outside the range it stays, for the check to refuse
        initial = lo + max(1, (initial - low) * (hi - lo) // span)
    return replace(
        cfg,
        min_start_epoch=lo,
        max_start_epoch=hi,
        initial_max_start_epoch=initial,
        expert_extra_epochs=cfg.expert_extra_epochs + high - hi,
    )


def check(cfg: DATMConfig, boost_beta: float) -> list[str]:
    errors = mtt_check(cfg, boost_beta)
    if not 0 <= cfg.match_from < 1:
        errors.append(
            f"method.match_from: {cfg.match_from} leaves no parameter to match; expected a fraction in [0, 1)"
        )
    low = cfg.initial_max_start_epoch
    if low is not None and not cfg.min_start_epoch < low <= cfg.max_start_epoch:
        errors.append(
            f"method.initial_max_start_epoch: {low} is outside the experts' start range; expected min_start_epoch "
            f"{cfg.min_start_epoch} < it <= max_start_epoch {cfg.max_start_epoch}"
        )
    if cfg.compile_unroll and cfg.learn_labels:
        errors.append(
            "compute.compile_unroll: the compiled unroll does not carry gradients into labels; DATM learns them "
            "(method.learn_labels): leave compile_unroll off"
        )
    return errors


SPEC = MethodSpec(
    DATMConfig,
    DATMDistiller,
    Capabilities(needs_experts=True, learns_lr=True, learns_labels=True, functional=True),
    checks=check,
    stage_config=stage_range,
)
