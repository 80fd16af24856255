"""RaT-BPTT: Embarrassingly Simple Dataset Distillation (Feng, Vedantam & Kempe, ICLR 2024).

Each outer step trains a freshly initialised network on the synthetic set with Adam for N steps; only the last
`window` steps keep a graph (random truncation), and the meta-loss is the cross-entropy of the trained network on a
real batch. As the reference does: the real batches walk through the real data epoch by epoch (a shuffled pass of
`batch_real` batches), N is drawn uniformly in [window, horizon] once per such epoch, and the real batch is augmented
like the synthetic one. Images (and, optionally, labels) are updated by Adam; the EMA of the images' meta-gradient
norm is updated first and their gradient then clipped at clip_factor x it (learned labels are neither counted nor
clipped, as the reference clips only the images). With `batch_per_class` each inner step draws that many images of
every class (the reference's class-balanced batches). Images start as unit-norm Gaussian noise. Learned
labels are raw non-negative scores (one-hot at the start, clamped at 0 after each update), stored as the stage's soft
labels and trained on as they are. The images are meant for the inner loop's optimiser: the stage records the
schedule Adam at `inner_lr` without lr decay (`EVAL_SCHEDULE`), which evaluation, transitions and replay use.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from ..core.config import opt
from ..models.chunking import MICRO_BATCH_HELP, describe, micro_batch
from ..models.functional import FlatParams
from ..models.training import soft_cross_entropy
from .base import Capabilities, MethodConfig, MethodSpec, StageOutput, StageTask
from .loop import DistillLoop
from .workspace import Workspace

BETAS, EPS = (0.9, 0.999), 1e-8
EVAL_SCHEDULE = {"optimizer": "adam", "lr_decay": False, "weight_decay": 0.0}  # the paper's evaluation of its sets


@dataclass
class RaTBPTTConfig(MethodConfig):
    """RaT-BPTT's settings (defaults: the paper's CIFAR-10 commands)."""

    iterations: int = opt(5000, min=1, help="Outer steps (each from a fresh random initialisation).")
    window: int = opt(80, min=1, help="W: inner steps differentiated (the last W of each unroll).")
    horizon: int = opt(250, min=1, help="T: the unroll length is drawn uniformly in [W, T].")
    inner_lr: float = opt(1e-3, gt=0, help="Adam lr of the inner (student) training.")
    lr_img: float = opt(1e-3, gt=0, help="Adam lr of the images.")
    lr_label: float = opt(1e-3, gt=0, help="Adam lr of the label logits (learn_labels).")
    learn_labels: bool = opt(False, help="Learn soft labels (published for CIFAR-100 and Tiny-ImageNet).")
    batch_syn: int | None = opt(None, min=1, help="Synthetic minibatch per inner step (default: all images).")
    batch_per_class: int | None = opt(
        None,
        min=1,
        help="Images of every class in each inner step's batch, drawn per class (the reference's --batch_per_class; "
        "default: batch_syn's rule).",
    )
    micro_batch: int | None = opt(
        None,
        min=0,
        help=f"{MICRO_BATCH_HELP} of each inner step (default: chosen from device and shapes, recorded in the stage; "
        "0: whole batch).",
        compute="micro_batch",
    )
    batch_real: int = opt(5000, min=1, help="Real images in the meta-loss batch.")
    clip_factor: float = opt(2.0, gt=0, help="Clip the images' meta-gradient at this x the EMA of its norm.")
    clip_ema: float = opt(0.9, min=0, max=1, help="Decay of the EMA of the images' meta-gradient norm.")
    init: Literal["unit_noise", "noise", "real"] = opt("unit_noise", help="Initial images.")
    checkpoint_every: int = opt(200, min=1, help="Iterations between resumable in-stage checkpoints.")


def adam_steps(net: FlatParams, p, batch, steps: int, lr: float, state, create_graph: bool, micro_batch=None):
    """`steps` Adam steps on the flat parameters p from `state` (m, v, t), step i on `batch(i)` (inputs,
    targets); differentiable when create_graph, otherwise without any graph."""
    m, v, t = state
    for i in range(steps):
        x, y = batch(i)
        if not create_graph:  # no graph at all: not through the inputs either
            p, x, y = p.detach().requires_grad_(True), x.detach(), y.detach()
        g = net.grad(p, x, y, create_graph, micro_batch, soft_cross_entropy)
        t += 1
        m = BETAS[0] * m + (1 - BETAS[0]) * g
        v = BETAS[1] * v + (1 - BETAS[1]) * g * g
        m_hat, v_hat = m / (1 - BETAS[0] ** t), v / (1 - BETAS[1] ** t)
        p = p - lr * m_hat / (torch.sqrt(v_hat + 1e-16) + EPS)  # + 1e-16: finite derivative where v is 0
        if not create_graph:
            p, m, v = p.detach(), m.detach(), v.detach()
    return p, (m, v, t)


def class_balanced(y: torch.Tensor, per_class: int, g: torch.Generator) -> torch.Tensor:
    """Indices of `per_class` examples of every class of hard labels `y` (all of a class that has fewer), drawn
    without replacement within each class and kept in ascending order, as the reference's subsample."""
    out = []
    for c in torch.unique(y):
        members = torch.nonzero(y == c).flatten()
        out.append(members[torch.randperm(len(members), generator=g)[:per_class]].sort().values)
    return torch.cat(out)


def clip_to_ema(tensors: list[torch.Tensor], ema: torch.Tensor, factor: float, decay: float) -> float:
    """RaT-BPTT's clip: the EMA of the gradient norm of `tensors` updated first (the first step starts it), then
    their gradients scaled down to at most factor x it; returns the norm (not finite: nothing changed)."""
    norm = torch.sqrt(sum((t.grad**2).sum() for t in tensors if t.grad is not None))
    if torch.isfinite(norm):
        ema.copy_(norm if float(ema) == 0 else decay * ema + (1 - decay) * norm)
        limit = factor * float(ema)
        if float(norm) > limit:
            for t in tensors:
                if t.grad is not None:
                    t.grad.mul_(limit / float(norm))
    return float(norm)


def truncated_unroll(net: FlatParams, p0, batch, n: int, window: int, lr: float, micro_batch: int | None = None):
    """Parameters after n Adam steps from p0 (step i on `batch(i)`), with a graph through the last `window` only."""
    zeros = torch.zeros_like(p0)
    p, (m, v, t) = adam_steps(net, p0, batch, n - window, lr, (zeros, zeros.clone(), 0), False, micro_batch)
    return adam_steps(
        net,
        p.detach().requires_grad_(True),
        lambda i: batch(n - window + i),
        window,
        lr,
        (m.detach(), v.detach(), t),
        True,
        micro_batch,
    )[0]


class RaTBPTTDistiller:
    def __init__(self, ctx):
        self.ctx = ctx

    def distill(self, task: StageTask) -> StageOutput:
        cfg: RaTBPTTConfig = task.config
        ctx, dev = self.ctx, self.ctx.device
        g = torch.Generator().manual_seed(task.seed)
        ws = Workspace.build(ctx, task, cfg.init, g)
        labels = F.one_hot(ws.labels, ctx.num_classes).float().requires_grad_(cfg.learn_labels)
        groups = ws.param_groups(cfg.lr_img, task.boost_beta)
        if cfg.learn_labels:
            groups.append({"params": [labels], "lr": cfg.lr_label})
        opt_img = torch.optim.Adam(groups, lr=cfg.lr_img)
        net = FlatParams(ctx.make_model().to(dev))
        size = tuple(ws.images.shape[-2:])
        ctx_soft = F.one_hot(ws.ctx_y, ctx.num_classes).float()
        ema = torch.zeros(())  # EMA of the meta-gradient norm (kept in checkpoints)
        real_pool = torch.cat(task.pool)
        learnable = ws.learnable() + ([labels] if cfg.learn_labels else [])
        per_epoch = max(1, len(real_pool) // cfg.batch_real)  # real batches per pass over the data (last one dropped)
        all_labels = ws.all_y  # hard labels of the student's set, for class-balanced batches
        n_syn = len(all_labels)
        bs = min(cfg.batch_per_class * ctx.num_classes if cfg.batch_per_class else cfg.batch_syn or n_syn, n_syn)
        chunk = micro_batch(cfg.micro_batch, net.model, ws.all_x[:bs], "unroll")

        def draw_batch() -> torch.Tensor:
            if cfg.batch_per_class:
                return class_balanced(all_labels, cfg.batch_per_class, g)
            return torch.randperm(n_syn, generator=g)[:bs]

        @functools.lru_cache(maxsize=1)  # the same epoch for `per_epoch` steps in a row: shuffled once
        def real_epoch(e: int) -> tuple[torch.Tensor, int]:
            """Epoch e of the real data: its shuffled order and its unroll length (a generator of its own, so that a
            resumed stage redraws the same)."""
            ge = torch.Generator().manual_seed(task.seed * 1_000_003 + e)
            return torch.randperm(len(real_pool), generator=ge), int(
                torch.randint(cfg.window, cfg.horizon + 1, (1,), generator=ge)
            )

        def step(it: int) -> float:
            torch.manual_seed(int(torch.randint(2**31 - 1, (1,), generator=g)))
            p0 = FlatParams(ctx.make_model()).flatten().to(dev)
            order, n = real_epoch(it // per_epoch)
            x_all, y_all = ws.all_x, torch.cat([ctx_soft, labels])
            draws = [draw_batch().to(dev, non_blocking=True) for _ in range(n)]
            augs = [ctx.dsa.sample(len(d), size, g) for d in draws]

            def batch(i):
                return ctx.dsa.apply(x_all[draws[i]], augs[i]), y_all[draws[i]]

            p = truncated_unroll(net, p0, batch, n, cfg.window, cfg.inner_lr, chunk)
            b = it % per_epoch
            xr_idx = real_pool[order[b * cfg.batch_real : (b + 1) * cfg.batch_real]]
            xr = ctx.train_x[xr_idx].to(dev)
            xr = ctx.dsa(xr, g) if ctx.dsa.enabled else xr  # both batches augmented, as the reference
            loss = F.cross_entropy(net(p, xr), ctx.train_y[xr_idx].to(dev))
            loss.backward(inputs=learnable)
            clip_to_ema(ws.learnable(), ema, cfg.clip_factor, cfg.clip_ema)  # the images only, as the reference
            return float(loss.detach())

        def soft_labels():
            return labels.detach().cpu().clone() if cfg.learn_labels else None

        def output(log: dict):
            out = ws.output(task, cfg.inner_lr, log, soft_labels=soft_labels())
            out.stage.meta["schedule"] = dict(EVAL_SCHEDULE)
            return out

        tensors = {**ws.tensors(), "labels": labels, "ema": ema}
        loop = DistillLoop(
            ctx,
            task,
            "ratbptt",
            cfg.iterations,
            cfg.checkpoint_every,
            tensors,
            {"img": opt_img},
            g,
            hint="lower method.lr_img or method.inner_lr",
            identity={"revision": 2},  # raw labels and per-epoch real batches: older checkpoints do not apply
            project=(lambda: labels.clamp_(min=0)) if cfg.learn_labels else None,
            snapshot=lambda: output({}).stage,
        )
        losses = loop.run(step)
        log = loop.log(
            losses,
            iterations=cfg.iterations,
            ema_grad_norm=float(ema),
            real_batches=per_epoch,
            batch_syn=bs,
            micro_batch=describe(cfg.micro_batch, chunk),
        )
        return output(log)


def check(cfg: RaTBPTTConfig, boost_beta: float) -> list[str]:
    errors = [f"method.window: {cfg.window} is above method.horizon {cfg.horizon}"] if cfg.window > cfg.horizon else []
    if cfg.batch_per_class and cfg.batch_syn:
        errors.append(
            f"method.batch_per_class: {cfg.batch_per_class} and method.batch_syn {cfg.batch_syn} both size the inner "
            "batch; set one of them"
        )
    return errors


SPEC = MethodSpec(
    RaTBPTTConfig,
    RaTBPTTDistiller,
    Capabilities(learns_labels=True, functional=True),
    checks=check,
    revisions=(
        "the meta-gradient norm and its clip cover the images only; learned labels are neither counted nor clipped",
    ),
)
