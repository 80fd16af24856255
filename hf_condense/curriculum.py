"""Forgetting-score curricula (PDD section 4.2): stage i draws only on real examples whose forgetting score lies in
[w (i-1), w i) (w = 3 in the paper), discarding the easy ones for later stages; or, where scores are too skewed for
fixed bands (most examples of an easy dataset are never forgotten), on the i-th of P equal slices of each class
ranked by score.

Scores (Toneva et al. 2019): how often an example goes from correctly to wrongly classified between presentations,
counted in a dedicated training pass of the recipe's network, cached under a key of everything that changes them.
"""

from __future__ import annotations

import torch

from .context import RunContext, content_key
from .io import load_verified, save_verified
from .training import train_epoch


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


def forgetting_scores(ctx: RunContext, epochs: int) -> torch.Tensor:
    """Forgetting scores of every train example after `epochs` epochs of the recipe's network (cached)."""
    key = content_key(
        {
            "data": ctx.data_key(),
            "model": ctx.recipe.model.__dict__,
            "epochs": epochs,
            "augment": ctx.recipe.augment.strategy,
            "seed": ctx.recipe.seed,
            "format": 1,
        }
    )
    path = ctx.cache_dir / "forgetting" / f"{key}.safetensors"
    with ctx.accelerator.main_process_first():  # the main process counts; the others read its file
        loaded = load_verified(path, key, "forgetting-score")
        if loaded is not None:
            return loaded[0]["scores"]
        if not ctx.accelerator.is_main_process:
            raise RuntimeError(f"{path}: the main process's forgetting scores cannot be read")
        torch.manual_seed(ctx.recipe.seed)
        model = ctx.make_model().to(ctx.device)
        g = torch.Generator().manual_seed(ctx.recipe.seed)
        sgd = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        counter = ForgettingCounter(ctx.train_y)
        ctx.print(f"counting forgetting events over {epochs} epoch(s)")
        for _ in range(epochs):
            train_epoch(model, sgd, ctx.train_x, ctx.train_y, 256, ctx.dsa, g, ctx.device, on_batch=counter)
        scores = counter.scores()
        save_verified({"scores": scores}, path, key)
        return scores


def curriculum_scores(ctx: RunContext) -> torch.Tensor | None:
    """The forgetting scores a recipe's curriculum bands are cut from (None when it has no curriculum)."""
    st = ctx.recipe.stages
    return None if st.curriculum == "none" else forgetting_scores(ctx, st.forgetting_epochs)


def stage_pool(ctx: RunContext, stage: int, scores: torch.Tensor | None) -> list[torch.Tensor]:
    """Per class, the real train examples stage `stage` may use: all without scores, else its band."""
    if scores is None:
        return ctx.class_indices
    st = ctx.recipe.stages
    if st.curriculum == "forgetting_quantile":
        return quantile_pools(scores, ctx.class_indices, stage, st.count, st.ipc_of(stage), ctx.recipe.seed)
    return band_pools(scores, ctx.class_indices, stage, st.forgetting_band, st.ipc_of(stage))


def quantile_pools(
    scores: torch.Tensor, class_indices: list[torch.Tensor], stage: int, count: int, need: int, seed: int
) -> list[torch.Tensor]:
    """Per class, the `stage`-th of `count` equal slices of its examples ranked by score, least forgotten first (ties
    in an order fixed by `seed`, the same for every stage, so the slices partition the class); a slice of fewer than
    `need` examples is widened to its rank neighbours."""
    g = torch.Generator().manual_seed(seed)
    pools = []
    for idx in class_indices:
        shuffled = idx[torch.randperm(len(idx), generator=g)]
        ranked = shuffled[torch.argsort(scores[shuffled], stable=True)]
        n = len(ranked)
        lo, hi = (stage - 1) * n // count, stage * n // count
        if hi - lo < need:
            hi = min(n, lo + need)
            lo = max(0, hi - need)
        pools.append(ranked[lo:hi].sort().values)
    return pools


def band_pools(
    scores: torch.Tensor, class_indices: list[torch.Tensor], stage: int, width: float, need: int
) -> list[torch.Tensor]:
    """Per class, the examples with score in [width (stage-1), width stage); when fewer than `need` fall in the
    band, the examples whose scores are nearest to it fill up the pool."""
    lo, hi = width * (stage - 1), width * stage
    pools = []
    for idx in class_indices:
        s = scores[idx]
        inside = (s >= lo) & (s < hi)
        if int(inside.sum()) >= need:
            pools.append(idx[inside])
            continue
        dist = torch.where(s < lo, lo - s, torch.where(s >= hi, s - hi + 1e-3, torch.zeros_like(s)))
        pools.append(idx[torch.argsort(dist, stable=True)[:need]])
    return pools
