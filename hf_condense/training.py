"""Training and testing networks: the standard evaluation protocol over staged synthetic sets.

Protocol (DC/DSA/DM/MTT): a fresh network per run (each with its own initialisation), SGD momentum 0.9, weight decay
5e-4, batch 256, lr x 0.1 once at half the epochs, DSA on every batch, test accuracy after the last epoch.
Staged sets are trained progressively (S1, then S1 u S2, ... carrying weights and optimiser state), as unions
(a fresh network per cumulative union) or sequentially (S1, then S2 alone, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .augment import DSA
from .config import EvalConfig


@dataclass
class StageData:
    """What evaluation needs of one stage: its images and labels, and its training schedule."""

    images: torch.Tensor
    labels: torch.Tensor  # int64 class ids, or float32 soft labels (N x classes)
    lr: float
    epochs: int


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against class ids or against soft label distributions."""
    if target.dtype == torch.long:
        return F.cross_entropy(logits, target)
    return -(target * F.log_softmax(logits, dim=1)).sum(1).mean()


def train_epoch(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    dsa: DSA | None,
    generator: torch.Generator,
    device: torch.device,
    on_batch: Callable[[torch.Tensor, torch.Tensor], None] | None = None,
) -> None:
    """One shuffled pass over (x, y); `on_batch(indices, logits)` sees every batch (e.g. forgetting counters)."""
    model.train()
    perm = torch.randperm(len(x), generator=generator)
    for i in range(0, len(x), batch_size):
        idx = perm[i : i + batch_size]
        xb, yb = x[idx].to(device, non_blocking=True), y[idx].to(device, non_blocking=True)
        if dsa is not None and dsa.enabled:
            xb = dsa(xb, generator)
        logits = model(xb)
        loss = soft_cross_entropy(logits, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if on_batch is not None:
            on_batch(idx, logits.detach())


@torch.no_grad()
def test_accuracy(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device, batch_size: int = 1024
) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        logits = model(x[i : i + batch_size].to(device))
        correct += (logits.argmax(1).cpu() == y[i : i + batch_size]).sum().item()
    return correct / max(len(x), 1)


def fit(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    epochs: int,
    lr: float,
    cfg: EvalConfig,
    dsa: DSA | None,
    generator: torch.Generator,
    device: torch.device,
) -> None:
    """Train for `epochs` at `lr`, dropping it x 0.1 once at half (the standard protocol)."""
    for group in opt.param_groups:
        group["lr"] = lr
    for epoch in range(epochs):
        if epoch == epochs // 2 and epochs > 1:
            for group in opt.param_groups:
                group["lr"] = lr * 0.1
        train_epoch(model, opt, x, y, cfg.batch_size, dsa, generator, device)


def make_optimizer(model: nn.Module, cfg: EvalConfig, lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def _concat(stages: Sequence[StageData], num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Union of stages; hard labels become one-hot when any stage has soft labels."""
    if all(s.labels.dtype == torch.long for s in stages):
        return torch.cat([s.images for s in stages]), torch.cat([s.labels for s in stages])
    soft = [s.labels if s.labels.dtype != torch.long else F.one_hot(s.labels, num_classes).float() for s in stages]
    return torch.cat([s.images for s in stages]), torch.cat(soft)


def evaluate_run(
    stages: Sequence[StageData],
    make_model: Callable[[], nn.Module],
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    cfg: EvalConfig,
    dsa: DSA | None,
    mode: str,
    seed: int,
    device: torch.device,
    num_classes: int,
) -> list[float]:
    """One evaluation run over all stages; returns the test accuracy after each stage."""
    dsa = dsa if (cfg.augment and dsa is not None and dsa.enabled) else None
    generator = torch.Generator().manual_seed(seed)
    accs = []
    model = opt = None
    for k, stage in enumerate(stages):
        if mode == "union" or model is None:
            torch.manual_seed(seed)  # union: the same init for every budget of a run; runs differ by seed
            model = make_model().to(device)
            opt = make_optimizer(model, cfg, stage.lr)
        x, y = _concat(stages[: k + 1] if mode != "sequential" else [stage], num_classes)
        fit(model, opt, x, y, stage.epochs, stage.lr, cfg, dsa, generator, device)
        accs.append(test_accuracy(model, test_x, test_y, device, cfg.test_batch_size))
    return accs
