"""Forgetting-score curricula (PDD section 4.2): stage i draws only on real examples whose forgetting score lies in
[w (i-1), w i) (w = 3 in the paper), discarding the easy ones for later stages; or, where scores are too skewed for
fixed bands (most examples of an easy dataset are never forgotten), on the i-th of P equal slices of each class
ranked by score (scores: methods/forgetting.py).
"""

from __future__ import annotations

import torch

from ..methods.context import RunContext
from ..methods.forgetting import forgetting_scores
from .recipe import StagesConfig


def curriculum_scores(ctx: RunContext, st: StagesConfig, seed: int) -> torch.Tensor | None:
    """The forgetting scores a curriculum's bands are cut from (None without a curriculum)."""
    return None if st.curriculum == "none" else forgetting_scores(ctx, st.forgetting_epochs, seed)


def stage_pool(
    ctx: RunContext, st: StagesConfig, seed: int, stage: int, scores: torch.Tensor | None
) -> list[torch.Tensor]:
    """Per class, the real train examples stage `stage` may use: all without scores, else its band."""
    if scores is None:
        return ctx.class_indices
    if st.curriculum == "forgetting_quantile":
        return quantile_pools(scores, ctx.class_indices, stage, st.count, st.ipc_of(stage), seed)
    return band_pools(scores, ctx.class_indices, stage, st.forgetting_band, st.ipc_of(stage), last=stage == st.count)


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
    scores: torch.Tensor, class_indices: list[torch.Tensor], stage: int, width: float, need: int, last: bool = False
) -> list[torch.Tensor]:
    """Per class, the examples with score in [width (stage-1), width stage), open-ended for the `last` stage; when
    fewer than `need` fall in the band, the examples whose scores are nearest to it fill up the pool."""
    lo, hi = width * (stage - 1), (float("inf") if last else width * stage)
    pools = []
    for idx in class_indices:
        s = scores[idx]
        inside = (s >= lo) & ((s < hi) | last)
        if int(inside.sum()) >= need:
            pools.append(idx[inside])
            continue
        dist = torch.where(s < lo, lo - s, torch.where(s >= hi, s - hi + 1e-3, torch.zeros_like(s)))
        pools.append(idx[torch.argsort(dist, stable=True)[:need]])
    return pools
