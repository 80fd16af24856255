"""A module's parameters as one flat vector, for functional inner loops (MTT unrolls, expert snapshots)."""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call


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

    @torch.no_grad()
    def load_into(self, flat: torch.Tensor) -> None:
        for p, t in zip(self.model.parameters(), torch.split(flat, self.numels)):
            p.copy_(t.view_as(p))

    def metadata(self) -> dict[str, str]:
        import json

        return {"names": json.dumps(self.names), "shapes": json.dumps(self.shapes)}
