"""K independent networks trained as one: stacked parameters and torch.func.vmap (evaluation runs, experts).

Each network keeps its own initialisation, its own shuffles and its own augmentation draws (one generator each,
consumed in the same order as a sequential run), and SGD acts element-wise, so the K networks end where K sequential
runs would, up to float rounding; one vmapped step replaces K small ones.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state

from ..data.augment import DSA
from .training import TrainSchedule, batch_stats, epoch_values, optimizer_for, scheduled_epochs, soft_cross_entropy


class StackedNets:
    """K networks of one architecture as stacked parameters; `__call__` maps (K, B, ...) inputs to (K, B, classes)."""

    def __init__(self, models: Sequence[nn.Module], cfg: TrainSchedule, lr: float):
        self.base = copy.deepcopy(models[0]).to("meta")
        params, _ = stack_module_state(list(models))
        self.params = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        self.k = len(models)
        self.set_optimizer(cfg, lr)

    def set_optimizer(self, cfg: TrainSchedule, lr: float) -> None:
        # element-wise SGD (or Adam) on stacked tensors is K independent optimisers (momentum, moments, weight decay)
        self.opt = optimizer_for(self.params.values(), cfg, lr)

    def flat_params(self) -> torch.Tensor:
        """(networks, parameters): every network's parameters, flattened in module order, detached."""
        return torch.cat([v.detach().flatten(1) for v in self.params.values()], dim=1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.vmap(lambda p, xb: functional_call(self.base, p, (xb,)))(self.params, x)

    def unstack(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[i].detach() for k, v in self.params.items()}

    def fit(
        self, x, y, epochs: int, lr: float, cfg: TrainSchedule, dsa: DSA | None, generators, device, on_epoch=None
    ) -> None:
        """Every network's epochs on the standard schedule; each its own shuffle and augmentation draws.
        `on_epoch(K, loss=..., accuracy=...)` after each epoch of the K networks."""
        if cfg.cutmix:
            raise ValueError("stacked networks do not train with CutMix; train them one by one (vectorize off)")
        for _ in scheduled_epochs(self.opt, lr, epochs, cfg.lr_decay, cfg.decay_at, cfg.decay_factor):
            values = self.train_epoch(x, y, cfg.batch_size, dsa, generators, device)
            if on_epoch is not None:
                on_epoch(self.k, **values)

    def train_epoch(
        self, x, y, batch_size: int, dsa: DSA | None, generators, device, micro_batch=None, compile: bool = False
    ) -> dict:
        """One epoch of every network, one vmapped forward/backward per batch; their mean train loss and accuracy.
        `micro_batch` and `compile` are not used: stacking is for GPUs, where whole eager batches are fastest."""
        perms = [torch.randperm(len(x), generator=g) for g in generators]
        total = torch.zeros(3, device=device)
        for i in range(0, len(x), batch_size):
            xs, ys = [], []
            for perm, g in zip(perms, generators):
                idx = perm[i : i + batch_size]
                xb = x[idx].to(device, non_blocking=True)
                xs.append(dsa(xb, g) if dsa is not None and dsa.enabled else xb)
                ys.append(y[idx].to(device, non_blocking=True))
            logits = self(torch.stack(xs))
            # the sum of each network's mean loss: network k gets its own run's gradient
            mean = soft_cross_entropy(logits.flatten(0, 1), torch.cat(ys))
            self.opt.zero_grad(set_to_none=True)
            (mean * self.k).backward()
            self.opt.step()
            total += batch_stats(logits.flatten(0, 1), torch.cat(ys), mean)
        return epoch_values(total)

    @torch.no_grad()
    def accuracy(self, x: torch.Tensor, y: torch.Tensor, device: torch.device, batch_size: int) -> list[float]:
        correct = torch.zeros(self.k)
        for i in range(0, len(x), batch_size):
            xb = x[i : i + batch_size].to(device)
            pred = self(xb.expand(self.k, *xb.shape)).argmax(-1).cpu()
            correct += (pred == y[i : i + batch_size]).sum(1)
        return (correct / max(len(x), 1)).tolist()
