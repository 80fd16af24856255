"""What the methods that match under sampled networks share (DC, DSA, IDC, DM): their common config fields, the
networks they sample (PDD transition: copies of networks trained on the earlier stages), the random choices of one
class match, and the start and end of their image loop."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.config import opt
from ..models.training import fit, make_optimizer
from .base import MethodConfig, StageOutput, StageTask, training_union
from .loop import DistillLoop, loss_log
from .workspace import INIT_HELP, InitMode, Workspace


@dataclass
class SampledNetworkConfig(MethodConfig):
    """Settings shared by the methods that match under sampled networks (DC, DSA, DM)."""

    batch_real: int = opt(256, min=1, help="Real images per class per match.")
    init: InitMode = opt("real", help=INIT_HELP)
    transition_nets: int = opt(8, min=1, help="PDD transition: networks pre-trained on the earlier stages.")
    transition_epochs: int | None = opt(None, min=1, help="Their epochs (default: evaluation.epochs).")


def transition_starts(ctx, task: StageTask, count: int, epochs: int) -> list[dict] | None:
    """PDD transition for bases that sample networks: `count` networks trained on the earlier stages (the protocol's
    optimiser, `epochs` epochs, each stage's lr), whose weights replace fresh initialisations; None for stage 1."""
    if not (task.transition and task.previous):
        return None
    ev = task.previous[-1].schedule(task.train)  # the schedule the earlier stages' images are meant for
    x, y = training_union(task.previous)
    lr = task.previous[-1].lr
    starts = []
    detail = f"{count} network(s) x {epochs} epoch(s) on the {len(x)} images of stages 1..{len(task.previous)}"
    with ctx.progress(f"stage {task.stage} transition networks", count * epochs, "epoch", detail=detail) as bar:
        for i in range(count):
            torch.manual_seed(task.seed + 7 * i)
            model = ctx.make_model().to(ctx.device)
            g = torch.Generator().manual_seed(task.seed + 7 * i)
            dsa = ctx.dsa if ev.augment else None
            fit(model, make_optimizer(model, ev, lr), x, y, epochs, lr, ev, dsa, g, ctx.device, bar.update)
            starts.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    return starts


def sample_network(ctx, starts: list[dict] | None, g: torch.Generator) -> torch.nn.Module:
    """A fresh network, or (PDD transition) a copy of one trained on the earlier stages."""
    torch.manual_seed(int(torch.randint(2**31 - 1, (1,), generator=g)))
    model = ctx.make_model().to(ctx.device)
    if starts:
        model.load_state_dict(starts[int(torch.randint(len(starts), (1,), generator=g))])
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
    (IDC: multi-formation `factor`), SGD (momentum 0.5) on the images, and the PDD transition networks (None for
    stage 1 or without transition)."""
    g = torch.Generator().manual_seed(task.seed)
    ws = Workspace.build(ctx, task, cfg.init, g, factor)
    opt_img = torch.optim.SGD(ws.param_groups(cfg.lr_img, task.boost_beta), lr=cfg.lr_img, momentum=0.5)
    starts = transition_starts(ctx, task, cfg.transition_nets, cfg.transition_epochs or task.train.epochs)
    return g, ws, opt_img, starts


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
    return ws.output(task, lr, loss_log(losses, iterations=cfg.iterations, **log))
