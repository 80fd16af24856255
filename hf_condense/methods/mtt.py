"""MTT: Dataset Distillation by Matching Training Trajectories (Cazenavette et al., CVPR 2022).

Each iteration picks an expert and a start epoch t <= max_start_epoch; a student starts at theta*_t and takes
syn_steps SGD steps with a learnable step size alpha on augmented (non-siamese DSA) minibatches of the synthetic set;
the loss is ||theta_N - theta*_{t+M}||^2 / ||theta*_t - theta*_{t+M}||^2 (M = expert_epochs), backpropagated through
the unroll into the images and alpha, each updated by SGD with momentum 0.5. Images start as random real images.
In a stage engine run the student also trains on the earlier stages (conditioning), the experts start from weights
trained on them (transition), and boosting lets earlier blocks move at lr_img x beta.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from accelerate.utils import tqdm

from ..config import MethodConfig, opt
from ..functional import FlatParams
from ..trajectories import ExpertSettings, ExpertStore
from ..unroll import unroll_backward
from .base import Capabilities, DivergenceError, MethodSpec, StageOutput, StageTask, StateFile, SynSet


@dataclass
class MTTConfig(MethodConfig):
    name: str = "mtt"
    iterations: int = opt(5000, min=1, help="Distillation iterations per stage.")
    syn_steps: int = opt(20, min=1, help="Student SGD steps per iteration (N).")
    expert_epochs: int = opt(2, min=1, help="Expert epochs the student must match (M).")
    max_start_epoch: int = opt(20, min=0, help="Latest expert epoch a student may start from.")
    min_start_epoch: int = opt(0, min=0, help="Earliest expert epoch a student may start from.")
    lr_img: float = opt(1000.0, gt=0, help="SGD lr (momentum 0.5) of the images.")
    lr_lr: float = opt(1e-5, min=0, help="SGD lr (momentum 0.5) of the learnable step size alpha.")
    lr_teacher: float = opt(0.01, gt=0, help="Experts' SGD lr, and alpha's initial value.")
    batch_syn: int | None = opt(None, min=1, help="Synthetic minibatch per student step (default: all images).")
    num_experts: int = opt(100, min=1, help="Expert trajectories to train and sample from.")
    expert_batch_size: int = opt(256, min=1, help="Experts' minibatch size.")
    expert_augment: bool = opt(True, help="DSA while training experts.")
    expert_extra_epochs: int = opt(0, min=0, help="Train experts this many epochs beyond what matching needs.")
    transition_epochs: int | None = opt(
        None,
        min=1,
        help="PDD transition: epochs on the earlier stages before "
        "the real epochs of a stage's experts (default: evaluation.epochs).",
    )
    memory: Literal["plain", "checkpoint"] = opt(
        "plain",
        help="checkpoint: recompute the unroll in segments (memory of one segment, same gradients, ~1.3x time).",
    )
    segments: int | None = opt(None, min=1, help="Segments of the checkpointed unroll (default sqrt(syn_steps)).")
    init: Literal["real", "noise"] = opt("real", help="Initial images: random real images, or Gaussian noise.")
    max_alpha_factor: float = opt(100.0, gt=1, help="alpha above lr_teacher x this counts as divergence.")
    checkpoint_every: int = opt(100, min=1, help="Iterations between resumable in-stage checkpoints.")


def expert_settings(cfg: MTTConfig) -> ExpertSettings:
    return ExpertSettings(
        num_experts=cfg.num_experts,
        epochs=cfg.max_start_epoch + cfg.expert_epochs + cfg.expert_extra_epochs,
        lr=cfg.lr_teacher,
        batch_size=cfg.expert_batch_size,
        augment=cfg.expert_augment,
    )


def minibatches(n: int, size: int, steps: int, g: torch.Generator) -> list[torch.Tensor]:
    """Per-step index batches drawn from successive random permutations of range(n) (as the reference)."""
    size = min(size, n)
    perm = torch.empty(0, dtype=torch.long)
    out = []
    for _ in range(steps):
        if len(perm) < size:
            perm = torch.cat([perm, torch.randperm(n, generator=g)])
        out.append(perm[:size])
        perm = perm[size:]
    return out


def init_images(ctx, task: StageTask, mode: str, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """ipc images per class: random real images from the stage's pool (or noise), with their labels."""
    labels = torch.arange(ctx.num_classes).repeat_interleave(task.ipc)
    if mode == "noise":
        return torch.randn((len(labels), *ctx.train_x.shape[1:]), generator=g), labels
    picks = [pool[torch.randperm(len(pool), generator=g)[: task.ipc]] for pool in task.pool]
    return ctx.train_x[torch.cat(picks)].clone(), labels


class MTTDistiller:
    """Trajectory matching for one stage at a time."""

    expert_settings = staticmethod(expert_settings)

    def __init__(self, ctx):
        self.ctx = ctx
        self.store = ExpertStore(ctx)

    def distill(self, task: StageTask) -> StageOutput:
        cfg: MTTConfig = task.config
        ctx, dev = self.ctx, self.ctx.device
        ev = ctx.recipe.evaluation
        settings = expert_settings(cfg)
        earlier = task.previous if (task.transition and task.previous) else []
        key, paths = self.store.stage_experts(settings, earlier, cfg.transition_epochs or ev.epochs, ev)

        g = torch.Generator().manual_seed(task.seed)
        images, labels = init_images(ctx, task, cfg.init, g)
        images = images.to(dev).requires_grad_(True)
        context = task.context_set
        ctx_x = torch.cat([s.images for s in context]).to(dev) if context else images.new_zeros((0, *images.shape[1:]))
        ctx_y = torch.cat([s.labels for s in context]) if context else labels.new_zeros(0)
        boosting = task.boost_beta > 0 and len(ctx_x) > 0
        if boosting:
            ctx_x.requires_grad_(True)
        all_y = torch.cat([ctx_y, labels]).to(dev)
        alpha = torch.tensor(cfg.lr_teacher, device=dev, requires_grad=True)
        groups = [{"params": [images], "lr": cfg.lr_img}]
        if boosting:
            groups.append({"params": [ctx_x], "lr": cfg.lr_img * task.boost_beta})
        opt_img = torch.optim.SGD(groups, lr=cfg.lr_img, momentum=0.5)
        opt_lr = torch.optim.SGD([alpha], lr=cfg.lr_lr, momentum=0.5)
        net = FlatParams(ctx.make_model().to(dev))
        segments = (cfg.segments or math.ceil(math.sqrt(cfg.syn_steps))) if cfg.memory == "checkpoint" else 1
        size = tuple(images.shape[-2:])
        batch_syn = cfg.batch_syn or len(all_y)

        state = StateFile(
            task.checkpoint_dir, "mtt", {"key": key, "stage": task.stage}, ctx.accelerator.is_main_process
        )
        tensors = {"images": images, "alpha": alpha, "ctx_x": ctx_x}
        first = state.restore(tensors, {"img": opt_img, "lr": opt_lr}, g)
        losses: list[float] = []
        bar = tqdm(
            range(first, cfg.iterations),
            desc=f"stage {task.stage} mtt",
            mininterval=5,
            main_process_only=True,
            initial=first,
            total=cfg.iterations,
        )
        for it in bar:
            e = int(torch.randint(len(paths), (1,), generator=g))
            t = int(torch.randint(cfg.min_start_epoch, cfg.max_start_epoch + 1, (1,), generator=g))
            traj = self.store.trajectory(paths[e], key, settings.epochs)
            start, target = traj[t].to(dev), traj[t + cfg.expert_epochs].to(dev)
            idx = minibatches(len(all_y), batch_syn, cfg.syn_steps, g)
            augs = [ctx.dsa.sample(len(ix), size, g) for ix in idx]

            def batch(j, idx=idx, augs=augs):
                x = torch.cat([ctx_x, images])[idx[j].to(dev)]
                return ctx.dsa.apply(x, augs[j]), all_y[idx[j].to(dev)]

            good = {k: v.detach().clone() for k, v in tensors.items()}
            opt_img.zero_grad(set_to_none=True)
            opt_lr.zero_grad(set_to_none=True)
            loss = unroll_backward(net, start, target, alpha, batch, cfg.syn_steps, segments)
            grads_ok = all(p.grad is None or bool(torch.isfinite(p.grad).all()) for p in (images, alpha, ctx_x))
            if math.isfinite(loss) and grads_ok:
                opt_img.step()
                opt_lr.step()
            a = float(alpha.detach())
            reason = None if math.isfinite(loss) and grads_ok else f"non-finite loss or gradient (loss {loss})"
            if reason is None and not (0 < a <= cfg.lr_teacher * cfg.max_alpha_factor):
                reason = f"alpha left (0, {cfg.lr_teacher * cfg.max_alpha_factor:g}]: {a:.4g}"
            if reason:
                with torch.no_grad():
                    for k, v in tensors.items():
                        v.copy_(good[k])
                where = state.save(tensors, {"img": opt_img, "lr": opt_lr}, g, it)
                raise DivergenceError(
                    f"stage {task.stage}: MTT diverged at iteration {it} ({reason}); the last good "
                    f"images and alpha are in {where}; lower method.lr_img or method.lr_lr"
                )
            losses.append(loss)
            if it % 10 == 0:
                bar.set_postfix(loss=f"{loss:.4f}", alpha=f"{a:.4g}")
            if (it + 1) % cfg.checkpoint_every == 0 and it + 1 < cfg.iterations:
                state.save(tensors, {"img": opt_img, "lr": opt_lr}, g, it + 1)
        head, tail = losses[: max(1, len(losses) // 10)], losses[-max(1, len(losses) // 10) :]
        log = {
            "loss_start": sum(head) / max(len(head), 1),
            "loss_end": sum(tail) / max(len(tail), 1),
            "alpha": float(alpha.detach()),
            "experts": len(paths),
            "iterations": cfg.iterations,
        }
        stage = SynSet(images.detach().cpu(), labels, lr=float(alpha.detach()))
        previous = None
        if boosting:
            updated, offset = [], 0
            for s in task.previous:
                n = len(s.images)
                updated.append(SynSet(ctx_x[offset : offset + n].detach().cpu(), s.labels, s.lr, meta=s.meta))
                offset += n
            previous = updated
        return StageOutput(stage, previous=previous, log=log)


def check(recipe) -> list[str]:
    errors = []
    for k in range(1, recipe.stages.count + 1):
        cfg = recipe.stage_method(k)
        if cfg.min_start_epoch > cfg.max_start_epoch:
            errors.append(
                f"method.min_start_epoch: {cfg.min_start_epoch} is above max_start_epoch "
                f"{cfg.max_start_epoch} (stage {k})"
            )
    if recipe.model.kwargs.get("norm") == "batch":
        errors.append(
            "model.kwargs.norm: 'batch' updates running statistics inside the functional unroll; "
            "use 'instance' or 'none' for mtt"
        )
    return errors


SPEC = MethodSpec(MTTConfig, MTTDistiller, Capabilities(learns_lr=True), checks=check)
