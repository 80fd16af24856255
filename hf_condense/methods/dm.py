"""DM: Dataset Condensation with Distribution Matching (Zhao & Bilen, WACV 2023).

Each iteration samples a freshly initialised network (PDD transition: one trained on the earlier stages) and, class
by class, matches the mean embedding (penultimate features) of a real class batch and of the synthetic class images,
both under the same DSA draw; no bilevel loop, so an iteration costs a few forward/backward passes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.config import opt
from .base import Capabilities, MethodSpec, StageOutput, StageTask
from .loop import backward_shared
from .sampled import SampledNetworkConfig, my_class_draws, network_matching_setup, run_image_loop
from .workspace import Workspace


@dataclass
class DMConfig(SampledNetworkConfig):
    """DM's settings (defaults as published)."""

    iterations: int = opt(20000, min=1, help="Iterations (each with a freshly sampled network).")
    lr_img: float = opt(1.0, gt=0, help="SGD lr (momentum 0.5) of the images.")
    checkpoint_every: int = opt(500, min=1, help="Iterations between resumable in-stage checkpoints.")


def embed(net, x: torch.Tensor) -> torch.Tensor:
    """Penultimate-layer features (timm's pre-logits)."""
    return net.forward_head(net.forward_features(x), pre_logits=True).flatten(1)


def mean_embedding_loss(ctx, net, ws: Workspace, task: StageTask, batch_real: int, g) -> torch.Tensor:
    """Sum over this process's classes of ||mean embed(real class batch) - mean embed(synthetic class images)||^2
    (siamese DSA; every process draws for every class)."""
    loss = ws.images.new_zeros(())
    for c, draw in my_class_draws(ctx, ws, task, batch_real, True, g):
        xr, xs = draw.inputs(ctx, ws, c)
        with torch.no_grad():
            mr = embed(net, xr).mean(0)
        loss = loss + ((mr - embed(net, xs).mean(0)) ** 2).sum()
    return loss


class DMDistiller:
    def __init__(self, ctx):
        self.ctx = ctx

    def distill(self, task: StageTask) -> StageOutput:
        cfg: DMConfig = task.config
        ctx = self.ctx
        g, ws, opt_img, transitions = network_matching_setup(ctx, task, cfg)

        def step(it: int) -> float:
            net = transitions.network(g)
            net.train()
            for p in net.parameters():
                p.requires_grad_(False)
            loss = mean_embedding_loss(ctx, net, ws, task, cfg.batch_real, g)
            return backward_shared(ctx, loss, ws.learnable())

        return run_image_loop(ctx, task, "dm", cfg, g, ws, opt_img, step)


SPEC = MethodSpec(DMConfig, DMDistiller, Capabilities())
