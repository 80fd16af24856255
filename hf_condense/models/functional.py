"""A module's parameters as one flat vector, for functional inner loops (MTT unrolls, expert snapshots)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call


def buffer_free(model: nn.Module) -> bool:
    """Whether `model` holds no buffers: no running statistics (batch norm), which vmap would update in place and
    which would differ between a batch and its chunks."""
    return not any(True for _ in model.buffers())


class FlatParams:
    """Flatten / unflatten a module's parameters and run the module on a flat vector.

    The module must hold no buffers that change in forward (GroupNorm ConvNets qualify; BatchNorm does not).
    """

    def __init__(self, model: nn.Module):
        self.model = model
        named = list(model.named_parameters())
        self.names = [n for n, _ in named]
        self.shapes = [tuple(p.shape) for _, p in named]
        self.numels = [p.numel() for _, p in named]
        self.size = sum(self.numels)

    def flatten(self) -> torch.Tensor:
        """A detached copy of the module's current parameters (a new storage, never an alias)."""
        return torch.cat([p.detach().reshape(-1) for p in self.model.parameters()]).clone()

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        return {n: t.view(s) for n, t, s in zip(self.names, torch.split(flat, self.numels), self.shapes)}

    def __call__(self, flat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.model, self.unflatten(flat), (x,))

    def grad(
        self,
        flat: torch.Tensor,
        x: torch.Tensor,
        y: torch.Tensor,
        create_graph: bool,
        micro_batch: int | None = None,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
    ) -> torch.Tensor:
        """Gradient in `flat` of the batch-mean `loss_fn`. With `micro_batch`, the batch runs in chunks of that
        many examples whose gradients are summed: the same gradient up to float rounding (per-example norm and
        augmentation), but each chunk's activations stay in the CPU caches, which makes unrolls faster there
        (benchmarks/results/unroll_speed.md)."""
        n = len(x)
        size = micro_batch or n
        total = None
        for i in range(0, n, size):
            xi, yi = x[i : i + size], y[i : i + size]
            loss = loss_fn(self(flat, xi), yi) * (len(xi) / n)
            (g,) = torch.autograd.grad(loss, flat, create_graph=create_graph)
            total = g if total is None else total + g
        return total

    @torch.no_grad()
    def load_into(self, flat: torch.Tensor) -> None:
        for p, t in zip(self.model.parameters(), torch.split(flat, self.numels)):
            p.copy_(t.view_as(p))

    def metadata(self) -> dict[str, str]:
        import json

        return {"names": json.dumps(self.names), "shapes": json.dumps(self.shapes)}
