"""IDC: Dataset Condensation via Efficient Synthetic-Data Parameterization (Kim et al., ICML 2022).

Gradient matching with IDC's three changes to DC. Multi-formation: each stored image decodes into factor^2 images
(`hf_condense.formation`), which is what the matching and every later training sees. The matching network trains on
*real* data between rounds (`n_data` images, DSA without cutout plus CutMix), from a fresh initialisation each
iteration (PDD transition: from one trained on the earlier stages with IDC's own training recipe,
`IDCConfig.transition_schedule`). The distance is L1 (default) between the
convolution weights' gradients (no biases, no classifier), and the images take one SGD step per class. Images are
clamped to the pixel range at the start of each iteration.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from typing import Literal

import torch
import torch.nn.functional as F

from ..core.config import opt
from ..data.augment import DSA, cutmix
from ..models.training import TrainSchedule
from .base import Capabilities, MethodSpec, StageOutput, StageTask
from .gradient_matching import class_match, gradient_distance
from .sampled import ClassDraw, SampledNetworkConfig, network_matching_setup, run_image_loop


@dataclass
class IDCConfig(SampledNetworkConfig):
    """IDC's settings (defaults: the paper's CIFAR-10 row)."""

    iterations: int = opt(500, min=1, help="Outer iterations, each with a freshly sampled network.")
    inner_loop: int = opt(100, min=1, help="Matching rounds per network; the network trains on real data after each.")
    factor: int = opt(2, min=1, help="Multi-formation factor: each stored image decodes into factor^2 images.")
    metric: Literal["l1", "mse", "cos"] = opt("l1", help="Gradient distance: L1, squared L2, or DC's 1 - cosine.")
    match_bias: bool = opt(False, help="Also match the gradients of biases and norm parameters.")
    match_fc: bool = opt(False, help="Also match the gradient of the classifier's weight.")
    batch_real: int = opt(64, min=1, help="Real images per class per match.")
    batch_syn_max: int = opt(128, min=1, help="At most this many decoded synthetic images per class per match.")
    lr_img: float = opt(0.04, gt=0, help="SGD lr (momentum 0.5) of the images, in the model's input space.")
    n_data: int = opt(500, min=0, help="Real images the network trains on after each round (0: it stays fixed).")
    lr_net: float = opt(0.01, gt=0, help="SGD lr (momentum 0.9, weight decay 5e-4) of the matching network.")
    cutmix_p: float = opt(
        0.5, min=0, max=1, help="Probability of CutMix on each batch the networks train on (real, and transitions)."
    )
    train_batch_size: int = opt(
        64, min=1, help="Batch of IDC's own training (argument.py --batch_size), which PDD transitions train with."
    )

    def transition_schedule(self, train: TrainSchedule) -> TrainSchedule:
        """IDC's own training (its train.py train_only, which the PDD + IDC code trains transitions with): SGD at
        lr_net (momentum 0.9, weight decay 5e-4), batch train_batch_size, lr x 0.2 at 2/3 and 5/6 of the epochs,
        DSA then CutMix with probability cutmix_p."""
        return replace(
            train,
            batch_size=self.train_batch_size,
            lr=self.lr_net,
            momentum=0.9,
            weight_decay=5e-4,
            augment=True,
            optimizer="sgd",
            lr_decay=True,
            decay_at=(2 / 3, 5 / 6),
            decay_factor=0.2,
            cutmix=self.cutmix_p,
        )

    checkpoint_every: int = opt(10, min=1, help="Iterations between resumable in-stage checkpoints.")


def matched_params(net: torch.nn.Module, cfg: IDCConfig) -> list[torch.nn.Parameter]:
    """Convolution weights, plus the classifier weight and the 1-D parameters when asked."""
    keep = {4: True, 2: cfg.match_fc, 1: cfg.match_bias}
    return [p for p in net.parameters() if keep.get(p.ndim, False)]


def idc_distance(real: list[torch.Tensor], syn: list[torch.Tensor], metric: str) -> torch.Tensor:
    """Sum over the matched parameters of the chosen distance between real and synthetic gradients."""
    if metric == "cos":
        return gradient_distance(real, syn)
    power = 1 if metric == "l1" else 2
    return sum((gs - gr).abs().pow(power).sum() for gr, gs in zip(real, syn))


def cutmix_loss(net, x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """CutMix (`augment.cutmix`): the losses of the two label sets mixed by area."""
    x, perm, kept = cutmix(x, g)
    logits = net(x)
    return kept * F.cross_entropy(logits, y) + (1 - kept) * F.cross_entropy(logits, y[perm])


class IDCDistiller:
    def __init__(self, ctx):
        self.ctx = ctx

    def train_on_real(self, net, net_opt, pool: torch.Tensor, cfg: IDCConfig, aug: DSA, g: torch.Generator) -> None:
        """`n_data` random real images from the stage's pool, in batches of batch_real, DSA then maybe CutMix."""
        ctx = self.ctx
        idx = pool[torch.randperm(len(pool), generator=g)[: cfg.n_data]]
        net.train()
        for i in range(0, len(idx), cfg.batch_real):
            b = idx[i : i + cfg.batch_real]
            x, y = ctx.train_x[b].to(ctx.device), ctx.train_y[b].to(ctx.device)
            if aug.enabled:
                x = aug(x, g)
            if float(torch.rand(1, generator=g)) < cfg.cutmix_p:
                loss = cutmix_loss(net, x, y, g)
            else:
                loss = F.cross_entropy(net(x), y)
            net_opt.zero_grad(set_to_none=True)
            loss.backward()
            net_opt.step()

    def distill(self, task: StageTask) -> StageOutput:
        cfg: IDCConfig = task.config
        ctx = self.ctx
        g, ws, opt_img, transitions = network_matching_setup(ctx, task, cfg, cfg.factor)
        net_aug = DSA("_".join(f for f in ctx.dsa.families if f != "cutout") or "none")
        pool = torch.cat(task.pool)
        pre = ctx.preprocessor
        distance = partial(idc_distance, metric=cfg.metric)

        def step(it: int) -> float:
            with torch.no_grad():  # back into the pixel range
                ws.images.copy_(pre(pre.to_pixels(ws.images).clamp(0, 1)).to(ws.images.device))
            net = transitions.network(g)
            net.train()
            net_opt = torch.optim.SGD(net.parameters(), lr=cfg.lr_net, momentum=0.9, weight_decay=5e-4)
            params = matched_params(net, cfg)
            total = 0.0
            for r in range(cfg.inner_loop):
                for c in range(ctx.num_classes):
                    opt_img.zero_grad(set_to_none=True)
                    draw = ClassDraw.draw(ctx, ws, task.pool[c], c, cfg.batch_real, True, g, cfg.batch_syn_max)
                    loss = class_match(ctx, net, params, ws, c, draw, distance)
                    loss.backward(inputs=ws.learnable())
                    total += float(loss.detach())
                    if r < cfg.inner_loop - 1 or c < ctx.num_classes - 1:  # run_loop takes the last step
                        opt_img.step()
                if r < cfg.inner_loop - 1 and cfg.n_data > 0:
                    self.train_on_real(net, net_opt, pool, cfg, net_aug, g)
            return total / (cfg.inner_loop * ctx.num_classes)

        return run_image_loop(
            ctx, task, "idc", cfg, g, ws, opt_img, step, inner_loop=cfg.inner_loop, factor=cfg.factor
        )


def check(cfg: IDCConfig, boost_beta: float) -> list[str]:
    """Multi-formation needs the decoded images to train; boosting would move stored and decoded sets apart."""
    if boost_beta > 0 and cfg.factor > 1:
        return ["stages.boost_beta: boosting cannot keep training multi-formation stages; set method.factor: 1"]
    return []


# The PDD + IDC code (VITA-Group/ProgressiveDD before 844fa9a, distill_idc.py --filter-easy-to-hard) filters the whole
# real train set to a stage's forgetting band: its real batches, initial images and the networks' real epochs.
SPEC = MethodSpec(
    IDCConfig,
    IDCDistiller,
    Capabilities(),
    checks=check,
    revisions=(
        "PDD transition networks train with IDC's own recipe (batch 64, lr x 0.2 at 2/3 and 5/6, CutMix), not the "
        "evaluation's schedule",
    ),
    curriculum_scope="real",
)
