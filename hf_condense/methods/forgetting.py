"""Forgetting scores (Toneva et al. 2019): how often an example goes from correctly to wrongly classified between
presentations, counted in a dedicated training pass of the run's network and cached under a key of everything that
changes them. The forgetting coreset selects by them; PDD's curriculum (stages/curriculum.py) cuts bands from them.
"""

from __future__ import annotations

import torch

from ..models.training import train_epoch
from .context import RunContext
from .difficulty import cached_scores


class ForgettingCounter:
    """Per-example forgetting events, updated from every training batch's logits."""

    def __init__(self, labels: torch.Tensor):
        self.labels = labels
        self.prev = torch.zeros(len(labels), dtype=torch.bool)
        self.seen = torch.zeros(len(labels), dtype=torch.bool)
        self.events = torch.zeros(len(labels), dtype=torch.int32)

    def __call__(self, idx: torch.Tensor, logits: torch.Tensor) -> None:
        correct = logits.argmax(1).cpu() == self.labels[idx]
        self.events[idx] += (self.prev[idx] & ~correct).int()
        self.prev[idx] = correct
        self.seen[idx] = True

    def scores(self) -> torch.Tensor:
        """Events per example; examples never learnt count as the most forgotten (inf), as in Toneva et al."""
        out = self.events.float()
        out[self.seen & ~self.prev & (self.events == 0)] = float("inf")
        return out


def forgetting_scores(ctx: RunContext, epochs: int, seed: int) -> torch.Tensor:
    """Forgetting scores of every train example after `epochs` epochs of the run's network from `seed` (cached)."""

    def compute() -> torch.Tensor:
        torch.manual_seed(seed)
        model = ctx.make_model().to(ctx.device)
        g = torch.Generator().manual_seed(seed)
        sgd = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        counter = ForgettingCounter(ctx.train_y)
        detail = f"{epochs} epoch(s) over {len(ctx.train_y)} examples"
        with ctx.progress("forgetting scores", epochs, "epoch", detail=detail) as bar:
            for _ in range(epochs):
                x, y = ctx.train_x, ctx.train_y
                bar.update(1, **train_epoch(model, sgd, x, y, 256, ctx.dsa, g, ctx.device, on_batch=counter))
        return counter.scores()

    return cached_scores(ctx, "forgetting", {"epochs": epochs, "seed": seed, "format": 1}, compute)
