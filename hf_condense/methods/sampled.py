"""What the methods that match under sampled networks share (DC, DSA, IDC, DM): their common config fields, the
networks they sample (PDD transition: copies of networks trained on the earlier stages), the random choices of one
class match, and the start and end of their image loop."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from ..core.config import opt
from ..models.training import TrainSchedule, fit, make_optimizer
from .base import MethodConfig, StageOutput, StageTask, training_union
from .loop import DistillLoop
from .workspace import INIT_HELP, InitMode, Workspace


@dataclass
class SampledNetworkConfig(MethodConfig):
    """Settings shared by the methods that match under sampled networks (DC, DSA, DM)."""

    batch_real: int = opt(256, min=1, help="Real images per class per match.")
    init: InitMode = opt("real", help=INIT_HELP)
    transition_mode: Literal["per_iteration", "pool"] = opt(
        "per_iteration",
        help="PDD transition. per_iteration (the reference): each iteration's fresh network trains on every earlier "
        "cumulative union in turn before matching; pool (faster): transition_nets networks trained once on the "
        "earlier stages, one copied per iteration.",
        later_stages=True,
    )
    transition_nets: int = opt(8, min=1, help="transition_mode pool: how many networks.", later_stages=True)
    transition_epochs: int | None = opt(
        None,
        min=1,
        help="Epochs per earlier union (default: evaluation.epochs / 5 per_iteration, evaluation.epochs pool).",
        later_stages=True,
    )

    def transition_schedule(self, train: TrainSchedule) -> TrainSchedule | None:
        """How the transition networks train on the earlier unions, when the method's official code trains them
        with a recipe of its own (IDC); None: each union at its last stage's lr and schedule (the evaluation's)."""
        return None


class Transitions:
    """PDD transition for the bases that sample a network every iteration (DC, DSA, IDC, DM).

    `per_iteration` (default, the reference PDD + IDC): every iteration's fresh network is first trained on each
    cumulative earlier union in turn (S1, then S1 u S2, ...; `epochs` each, each union at its last stage's lr and
    schedule) and then matched. `pool` (a speed option): `count` networks are trained once on the earlier stages
    (`epochs` each) and every iteration copies one of them. Stage 1, or no transition: fresh networks.
    """

    def __init__(self, ctx, task: StageTask, cfg: SampledNetworkConfig):
        self.ctx, self.task = ctx, task
        self.active = bool(task.transition and task.previous)
        self.mode = cfg.transition_mode
        per_union = max(1, task.train.epochs // 5)
        self.epochs = cfg.transition_epochs or (per_union if self.mode == "per_iteration" else task.train.epochs)
        self.unions = []
        own = cfg.transition_schedule(task.train)
        for j in range(1, len(task.previous) + 1) if self.active else ():
            last = task.previous[j - 1]
            sched = own or last.schedule(task.train)
            self.unions.append((*training_union(task.previous[:j]), float(own.lr if own else last.lr), sched))
        self.starts = self.pool(cfg.transition_nets) if self.active and self.mode == "pool" else None

    def train(self, model: torch.nn.Module, unions, g: torch.Generator, on_epoch=None) -> None:
        dsa = self.ctx.dsa
        for x, y, lr, sched in unions:
            opt = make_optimizer(model, sched, lr)
            fit(model, opt, x, y, self.epochs, lr, sched, dsa if sched.augment else None, g, self.ctx.device, on_epoch)

    def pool(self, count: int) -> list[dict]:
        task, ctx = self.task, self.ctx
        detail = f"{count} network(s) x {self.epochs} epoch(s) on stages 1..{len(task.previous)}"
        with ctx.progress(
            f"stage {task.stage} transition networks", count * self.epochs, "epoch", detail=detail
        ) as bar:
            starts = []
            for i in range(count):
                torch.manual_seed(task.seed + 7 * i)
                model = ctx.make_model().to(ctx.device)
                self.train(model, self.unions[-1:], torch.Generator().manual_seed(task.seed + 7 * i), bar.update)
                starts.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return starts

    def network(self, g: torch.Generator) -> torch.nn.Module:
        """This iteration's network: fresh, a copy of a pool network, or fresh and trained on the earlier unions."""
        seed = int(torch.randint(2**31 - 1, (1,), generator=g))
        torch.manual_seed(seed)
        model = self.ctx.make_model().to(self.ctx.device)
        if self.starts:
            model.load_state_dict(self.starts[int(torch.randint(len(self.starts), (1,), generator=g))])
        elif self.active:
            self.train(model, self.unions, torch.Generator().manual_seed(seed))
        return model


@dataclass
class ClassDraw:
    """The random choices of one class match: real images (indices into the train set), a subset of the class's
    synthetic images (None: all), and one siamese augmentation (None: none)."""

    real: torch.Tensor
    syn: torch.Tensor | None
    aug: object | None

    @classmethod
    def draw(cls, ctx, ws: Workspace, pool: torch.Tensor, c: int, batch_real: int, siamese: bool, g, max_syn=None):
        """Drawn for every class by every process in one order, whichever classes the process computes."""
        real = pool[torch.randperm(len(pool), generator=g)[:batch_real]]
        syn = torch.randperm(len(ws.class_x(c)), generator=g)[:max_syn] if max_syn is not None else None
        aug = ctx.dsa.sample(1, tuple(ws.images.shape[-2:]), g) if siamese and ctx.dsa.enabled else None
        return cls(real, syn, aug)

    def inputs(self, ctx, ws: Workspace, c: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The real and the synthetic batch of class c (differentiable in the synthetic images), augmented alike."""
        xr, xs = ctx.train_x[self.real].to(ctx.device, non_blocking=True), ws.class_x(c)
        if self.syn is not None:
            xs = xs[self.syn.to(xs.device)]
        if self.aug is not None:
            xr, xs = ctx.dsa.apply(xr, self.aug), ctx.dsa.apply(xs, self.aug)
        return xr, xs


def my_class_draws(ctx, ws: Workspace, task: StageTask, batch_real: int, siamese: bool, g) -> list[tuple]:
    """(class, ClassDraw) for this process's share of the classes; every process draws for every class, in class
    order, so that the generators stay in step."""
    draws = [ClassDraw.draw(ctx, ws, task.pool[c], c, batch_real, siamese, g) for c in range(ctx.num_classes)]
    return [(c, draws[c]) for c in ctx.share(ctx.num_classes)]


def network_matching_setup(ctx, task: StageTask, cfg, factor: int = 1):
    """Shared start of the methods that match under sampled networks (DC, DSA, IDC, DM): the generator, the workspace
    (IDC: multi-formation `factor`), SGD (momentum 0.5) on the images, and the PDD `Transitions` that give each
    iteration's network."""
    g = torch.Generator().manual_seed(task.seed)
    ws = Workspace.build(ctx, task, cfg.init, g, factor)
    opt_img = torch.optim.SGD(ws.param_groups(cfg.lr_img, task.boost_beta), lr=cfg.lr_img, momentum=0.5)
    return g, ws, opt_img, Transitions(ctx, task, cfg)


def run_image_loop(ctx, task: StageTask, name: str, cfg, g, ws: Workspace, opt_img, step, **log) -> StageOutput:
    """Shared end of the methods that match under sampled networks (DC, DSA, IDC, DM): the `DistillLoop` over the
    images' optimiser, then the stage at the protocol's lr, with the loss summary and `log` in its metadata."""
    lr = task.default_lr
    loop = DistillLoop(
        ctx,
        task,
        name,
        cfg.iterations,
        cfg.checkpoint_every,
        ws.tensors(),
        {"img": opt_img},
        g,
        hint="lower method.lr_img",
        snapshot=lambda: ws.output(task, lr, {}).stage,
    )
    losses = loop.run(step)
    return ws.output(task, lr, loop.log(losses, iterations=cfg.iterations, **log))
