"""Gradient matching: DC (Zhao, Mopuri & Bilen, ICLR 2021) and DSA (Zhao & Bilen, ICML 2021).

Each iteration samples a fresh network (PDD transition: one trained on the earlier stages). In `outer_loop` rounds it
matches, class by class, the gradient of the loss on a real class batch with the gradient on the synthetic class
images (distance: per output channel 1 - cosine, summed over layers; biases and norms ignored) and updates the
images; between rounds the network trains `inner_loop` epochs on the synthetic set. DSA applies the same
differentiable augmentation to the real and the synthetic batch (siamese) and augments the inner training too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..core.config import opt
from ..models.training import train_epoch
from .base import Capabilities, MethodSpec, StageOutput, StageTask
from .loop import backward_shared
from .sampled import (
    ClassDraw,
    SampledNetworkConfig,
    my_class_draws,
    network_matching_setup,
    run_image_loop,
)
from .workspace import Workspace

# (outer_loop, inner_loop) by IPC, as published for DC/DSA.
LOOPS = {1: (1, 1), 10: (10, 50), 20: (20, 25), 30: (30, 20), 40: (40, 15), 50: (50, 10)}


def default_loops(ipc: int) -> tuple[int, int]:
    """The published loops of the nearest tabulated IPC."""
    return LOOPS[min(LOOPS, key=lambda k: (abs(k - ipc), k))]


def gradient_distance(real: list[torch.Tensor], syn: list[torch.Tensor]) -> torch.Tensor:
    """DC's layer-wise distance: for each weight, sum over output channels of 1 - cosine; 1-D parameters ignored."""
    total = syn[0].new_zeros(())
    for gr, gs in zip(real, syn):
        if gr.ndim == 1:
            continue
        gr, gs = gr.reshape(gr.shape[0], -1), gs.reshape(gs.shape[0], -1)
        cos = (gr * gs).sum(-1) / (gr.norm(dim=-1) * gs.norm(dim=-1) + 1e-6)
        total = total + (1 - cos).sum()
    return total


def class_gradients(net, params, x, y, create_graph: bool) -> list[torch.Tensor]:
    """Gradients of the cross-entropy on (x, y) with respect to `params`."""
    grads = torch.autograd.grad(F.cross_entropy(net(x), y), params, create_graph=create_graph)
    return list(grads) if create_graph else [g.detach() for g in grads]


def class_match(
    ctx,
    net,
    params: list[torch.Tensor],
    ws: Workspace,
    c: int,
    draw: ClassDraw,
    distance: Callable[[list[torch.Tensor], list[torch.Tensor]], torch.Tensor] = gradient_distance,
) -> torch.Tensor:
    """`distance` between the gradients of class c's real batch and of its synthetic images, as `draw` chose them."""
    xr, xs = draw.inputs(ctx, ws, c)
    yr = torch.full((len(xr),), c, device=xr.device)
    ys = torch.full((len(xs),), c, device=xs.device)
    gr = class_gradients(net, params, xr, yr, create_graph=False)
    return distance(gr, class_gradients(net, params, xs, ys, create_graph=True))


def matching_loss(ctx, net, ws: Workspace, task: StageTask, batch_real: int, siamese: bool, g) -> torch.Tensor:
    """Sum over this process's classes of the gradient distance between a real class batch and the synthetic class
    images (every process draws for every class)."""
    params = [p for p in net.parameters() if p.requires_grad]
    mine = my_class_draws(ctx, ws, task, batch_real, siamese, g)
    return sum((class_match(ctx, net, params, ws, c, draw) for c, draw in mine), ws.images.new_zeros(()))


@dataclass
class DCConfig(SampledNetworkConfig):
    """DC's settings (DSA shares them; defaults and loops by IPC as published)."""

    iterations: int = opt(1000, min=1, help="Outer iterations (each with a freshly sampled network).")
    outer_loop: int | None = opt(None, min=1, help="Matching rounds per network (default: published value by IPC).")
    inner_loop: int | None = opt(None, min=1, help="Epochs on the synthetic set between rounds (default: by IPC).")
    lr_img: float = opt(0.1, gt=0, help="SGD lr (momentum 0.5) of the images.")
    lr_net: float = opt(0.01, gt=0, help="SGD lr of the network between rounds.")
    batch_train: int = opt(256, min=1, help="Minibatch of the network's training on the synthetic set.")
    checkpoint_every: int = opt(50, min=1, help="Iterations between resumable in-stage checkpoints.")


@dataclass
class DSAConfig(DCConfig):
    """DSA's settings: DC's, with siamese augmentation."""


class GradientMatchingDistiller:
    """DC, or DSA with `siamese` (the same augmentation on the real and synthetic batch of a match, and DSA in the
    inner training)."""

    name = "dc"
    siamese = False

    def __init__(self, ctx):
        self.ctx = ctx

    def distill(self, task: StageTask) -> StageOutput:
        cfg: DCConfig = task.config
        ctx = self.ctx
        siamese = self.siamese
        outer, inner = default_loops(task.ipc)
        outer, inner = cfg.outer_loop or outer, cfg.inner_loop or inner
        g, ws, opt_img, transitions = network_matching_setup(ctx, task, cfg)

        def step(it: int) -> float:
            net = transitions.network(g)
            net.train()
            net_opt = torch.optim.SGD(net.parameters(), lr=cfg.lr_net)
            total = 0.0
            for ol in range(outer):
                loss = matching_loss(ctx, net, ws, task, cfg.batch_real, siamese, g)
                total += backward_shared(ctx, loss, ws.learnable())  # the images only, not the network
                if ol == outer - 1:
                    break
                opt_img.step()
                opt_img.zero_grad(set_to_none=True)
                x, y = ws.all_x.detach(), ws.all_y
                for _ in range(inner):
                    train_epoch(net, net_opt, x, y, cfg.batch_train, ctx.dsa if siamese else None, g, ctx.device)
            return total / outer

        return run_image_loop(ctx, task, self.name, cfg, g, ws, opt_img, step, outer_loop=outer, inner_loop=inner)


class DSADistiller(GradientMatchingDistiller):
    """DSA: DC with siamese augmentation."""

    name = "dsa"
    siamese = True


SPECS = {
    "dc": MethodSpec(DCConfig, GradientMatchingDistiller, Capabilities()),
    "dsa": MethodSpec(DSAConfig, DSADistiller, Capabilities()),
}
