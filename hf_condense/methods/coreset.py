"""Coreset baselines: random, herding, k-center and forgetting selection of real images, stage by stage.

Herding (greedy mean matching, Welling 2009) and k-center (greedy max-min, Sener & Savarese 2018) work in the
penultimate-layer features of the recipe's network, trained for `embed_epochs` on the real train set (0: random
features). Forgetting (Toneva et al. 2019) keeps the most forgotten examples of each class (never-learned ones
first, ties in random order). Earlier stages' selections count as already chosen, so stages extend one another.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch

from ..core.config import opt
from ..models.training import train_epoch
from .base import Capabilities, MethodConfig, MethodSpec, StageOutput, StageTask, SynSet
from .forgetting import forgetting_scores


@dataclass
class RandomConfig(MethodConfig):
    """Random real images (no settings)."""


@dataclass
class HerdingConfig(MethodConfig):
    """Herding in the features of a network trained briefly on real data."""

    embed_epochs: int = opt(1, min=0, help="Epochs of training of the embedding network on real data.")


@dataclass
class KCenterConfig(HerdingConfig):
    """k-center in the same features as herding."""


@dataclass
class ForgettingConfig(MethodConfig):
    """The most forgotten examples of each class."""

    score_epochs: int = opt(10, min=1, help="Epochs of the training pass that counts forgetting events.")


def most_forgotten(scores: torch.Tensor, k: int, g: torch.Generator) -> torch.Tensor:
    """Positions of the k highest scores, ties broken at random."""
    order = torch.randperm(len(scores), generator=g)
    ranked = order[torch.argsort(scores[order], descending=True, stable=True)]
    return ranked[:k]


def herding(feats: torch.Tensor, k: int, chosen: torch.Tensor) -> torch.Tensor:
    """Greedily add k rows whose running mean (with `chosen` rows) best matches the mean of all rows."""
    mu = feats.mean(0)
    total = feats[chosen].sum(0)
    n = len(chosen)
    available = torch.ones(len(feats), dtype=torch.bool)
    available[chosen] = False
    picks = []
    for _ in range(k):
        dist = ((total[None] + feats) / (n + 1) - mu[None]).norm(dim=1)
        dist[~available] = float("inf")
        i = int(dist.argmin())
        picks.append(i)
        available[i] = False
        total += feats[i]
        n += 1
    return torch.tensor(picks, dtype=torch.long)


def kcenter(feats: torch.Tensor, k: int, chosen: torch.Tensor) -> torch.Tensor:
    """Greedily add k rows, each the farthest from all centres so far (first centre: nearest to the mean)."""
    if len(chosen):
        dmin = torch.cdist(feats, feats[chosen]).min(dim=1).values
    else:
        dmin = torch.full((len(feats),), float("inf"))
    picks = []
    for _ in range(k):
        i = int((feats - feats.mean(0)).norm(dim=1).argmin()) if torch.isinf(dmin).all() else int(dmin.argmax())
        picks.append(i)
        dmin = torch.minimum(dmin, (feats - feats[i]).norm(dim=1))
        dmin[i] = -1.0
    return torch.tensor(picks, dtype=torch.long)


def embedding_features(ctx, epochs: int, seed: int) -> torch.Tensor:
    """Penultimate features of every train image under the run's network trained `epochs` on the real data from
    `seed`; computed once per run (kept on the run context) and without touching the global RNG."""
    memo = ctx.__dict__.setdefault("_embedding_features", {})
    if (epochs, seed) not in memo:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = ctx.make_model().to(ctx.device)
        g = torch.Generator().manual_seed(seed)
        sgd = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        with ctx.progress("embedding network", epochs, "epoch", detail=f"{epochs} epoch(s) on real data") as bar:
            for _ in range(epochs):
                bar.update(1, **train_epoch(model, sgd, ctx.train_x, ctx.train_y, 256, ctx.dsa, g, ctx.device))
        model.eval()
        with torch.no_grad():
            chunks = [ctx.train_x[i : i + 1024].to(ctx.device) for i in range(0, len(ctx.train_x), 1024)]
            memo[(epochs, seed)] = torch.cat(
                [model.forward_head(model.forward_features(x), pre_logits=True).flatten(1).cpu() for x in chunks]
            )
    return memo[(epochs, seed)]


# A selector picks k examples of one class: (distiller, task, free, pool, prior, k, g) -> train indices, where `free`
# are the class's pool examples not taken by earlier stages and `prior` those that were.
Selector = Callable[..., torch.Tensor]


def select_random(d: CoresetDistiller, task, free, pool, prior, k, g) -> torch.Tensor:
    return free[torch.randperm(len(free), generator=g)[:k]]


def select_forgetting(d: CoresetDistiller, task, free, pool, prior, k, g) -> torch.Tensor:
    return free[most_forgotten(d.forgetting(task)[free], k, g)]


def feature_selector(select: Callable[[torch.Tensor, int, torch.Tensor], torch.Tensor]) -> Selector:
    """Herding or k-center in feature space, extending the earlier stages' picks."""

    def pick(d: CoresetDistiller, task, free, pool, prior, k, g) -> torch.Tensor:
        cand = torch.unique(torch.cat([pool, prior]))
        feats = embedding_features(d.ctx, task.config.embed_epochs, task.run_seed)[cand]
        return cand[select(feats, k, torch.searchsorted(cand, prior))]

    return pick


class CoresetDistiller:
    """Selects real images with its `selector`; the stage's lr is the evaluation lr."""

    def __init__(self, ctx, selector: Selector = select_random):
        self.ctx = ctx
        self.selector = selector
        self._scores: torch.Tensor | None = None

    def forgetting(self, task: StageTask) -> torch.Tensor:
        """Forgetting scores of every train example (cached across runs)."""
        if self._scores is None:
            self._scores = forgetting_scores(self.ctx, task.config.score_epochs, task.run_seed)
        return self._scores

    def distill(self, task: StageTask) -> StageOutput:
        taken = torch.cat(
            [s.indices for s in task.previous if s.indices is not None] or [torch.empty(0, dtype=torch.long)]
        )
        g = torch.Generator().manual_seed(task.seed)
        picks = []
        for c, pool in enumerate(task.start_pool):
            prior = taken[self.ctx.train_y[taken] == c] if len(taken) else taken
            free = pool[~torch.isin(pool, prior)]
            picks.append(self.selector(self, task, free, pool, prior, task.ipc, g))
        idx = torch.cat(picks)
        stage = SynSet(self.ctx.train_x[idx].clone(), self.ctx.train_y[idx].clone(), lr=task.default_lr, indices=idx)
        return StageOutput(stage)


_CAPS = Capabilities(synthetic=False)
SPECS = {
    "random": MethodSpec(RandomConfig, partial(CoresetDistiller, selector=select_random), _CAPS),
    "herding": MethodSpec(HerdingConfig, partial(CoresetDistiller, selector=feature_selector(herding)), _CAPS),
    "kcenter": MethodSpec(KCenterConfig, partial(CoresetDistiller, selector=feature_selector(kcenter)), _CAPS),
    "forgetting": MethodSpec(ForgettingConfig, partial(CoresetDistiller, selector=select_forgetting), _CAPS),
}
