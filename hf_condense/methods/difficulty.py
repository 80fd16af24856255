"""Per-example difficulty scores of the train split, cached under a key of everything that changes them, and PAD's
easy-to-hard schedule of the real examples its experts train on.

EL2N (Paul et al., NeurIPS 2021): the norm of softmax(f(x)) - onehot(y), averaged over networks trained a few epochs
from different seeds; higher is harder. PAD (Li et al., 2024, section 3.2) trains its experts on the easiest
`initial` fraction of each class first, adds harder examples until epoch `add_end`, then drops the easiest ones
(its code: a fraction from each removal epoch on).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..core.io import content_key, load_verified, save_verified
from ..models.training import test_logits, train_epoch
from .context import RunContext


def cached_scores(ctx: RunContext, kind: str, spec: dict, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
    """Per-example scores of the train split under ctx.cache_dir/`kind`/, keyed by the data, the model, the
    augmentation and `spec`: the main process computes them once, the others read its file."""
    key = content_key({"data": ctx.data_key(), "model": ctx.model.__dict__, "augment": ctx.augment, **spec})
    path = ctx.cache_dir / kind / f"{key}.safetensors"
    with ctx.accelerator.main_process_first():
        loaded = load_verified(path, key, f"{kind}-score")
        if loaded is not None:
            return loaded[0]["scores"]
        if not ctx.accelerator.is_main_process:
            raise RuntimeError(f"{path}: the main process's {kind} scores cannot be read")
        scores = compute()
        save_verified({"scores": scores}, path, key)
        return scores


def el2n_scores(ctx: RunContext, networks: int, epochs: int, seed: int) -> torch.Tensor:
    """EL2N of every train example: networks trained `epochs` epochs (SGD 0.01, momentum 0.9, weight decay 5e-4,
    batch 256, DSA), each from its own seed, then the mean error norm of their softmax outputs (cached)."""

    def compute() -> torch.Tensor:
        x, y = ctx.train_x, ctx.train_y
        total = torch.zeros(len(y))
        onehot = torch.nn.functional.one_hot(y, ctx.num_classes).float()
        with ctx.progress("EL2N scores", networks * epochs, "epoch", detail=f"{networks} network(s)") as bar:
            for k in range(networks):
                torch.manual_seed(seed * 1000 + k)
                model = ctx.make_model().to(ctx.device)
                g = torch.Generator().manual_seed(seed * 1000 + k)
                sgd = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
                for _ in range(epochs):
                    bar.update(1, **train_epoch(model, sgd, x, y, 256, ctx.dsa, g, ctx.device))
                probs = test_logits(model, x, ctx.device).softmax(1)
                total += (probs - onehot).norm(dim=1)
        return total / networks

    return cached_scores(ctx, "el2n", {"networks": networks, "epochs": epochs, "seed": seed, "format": 1}, compute)


@dataclass(frozen=True)
class Curriculum:
    """PAD's schedule of a class's examples, ranked easiest first: epoch e (from 0) trains on the easiest
    min(1, initial + (1 - initial) x e / add_end) of it while e <= add_end; on all of it after; and from each
    removal epoch r on (e > r) without the easiest fraction that removal names (the last one reached counts). The
    ranking is by EL2N scores of `networks` networks trained `epochs` epochs (`el2n_scores`)."""

    initial: float
    add_end: int
    removals: tuple[tuple[int, float], ...] = ()
    networks: int = 10
    epochs: int = 20

    @property
    def last_epoch(self) -> int:
        """The last epoch whose set differs from the one after it."""
        return max([self.add_end, *(r for r, _ in self.removals)])

    def kept(self, e: int, n: int) -> slice:
        """Which of a class's n ranked examples epoch e trains on."""
        if e <= self.add_end:
            share = 1.0 if self.add_end == 0 else min(1.0, self.initial + (1 - self.initial) * e / self.add_end)
            return slice(0, int(share * n))
        dropped = [f for r, f in sorted(self.removals) if e > r]
        return slice(int(dropped[-1] * n) if dropped else 0, n)

    def subset(self, ranked: Sequence[torch.Tensor], e: int) -> torch.Tensor:
        """Epoch e's train indices from each class's indices `ranked` easiest first."""
        return torch.cat([r[self.kept(e, len(r))] for r in ranked])


def ranked_by(scores: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor | None = None) -> list[torch.Tensor]:
    """Per class, the train indices (of `indices`, default all) sorted by score, lowest (easiest) first."""
    indices = torch.arange(len(labels)) if indices is None else indices
    out = []
    for c in labels.unique().tolist():
        mine = indices[labels[indices] == c]
        out.append(mine[torch.argsort(scores[mine], stable=True)])
    return out
