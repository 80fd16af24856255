"""Coreset baselines: herding matches the class mean, k-center covers, random extends stage by stage."""

from __future__ import annotations

import torch

from hf_condense.methods.coreset import herding, kcenter


def clusters(n=400, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g) * torch.linspace(0.2, 3, d)


def test_herding_matches_the_mean_better_than_random():
    feats = clusters()
    mu = feats.mean(0)
    picks = herding(feats, 10, torch.empty(0, dtype=torch.long))
    assert len(set(picks.tolist())) == 10
    herd_err = (feats[picks].mean(0) - mu).norm()
    g = torch.Generator().manual_seed(1)
    rand_err = torch.stack([(feats[torch.randperm(400, generator=g)[:10]].mean(0) - mu).norm() for _ in range(50)])
    assert herd_err < rand_err.quantile(0.05)


def test_kcenter_covers_better_than_random():
    feats = clusters()
    picks = kcenter(feats, 10, torch.empty(0, dtype=torch.long))
    radius = torch.cdist(feats, feats[picks]).min(1).values.max()
    g = torch.Generator().manual_seed(1)
    rand = torch.stack(
        [torch.cdist(feats, feats[torch.randperm(400, generator=g)[:10]]).min(1).values.max() for _ in range(50)]
    )
    assert radius < rand.min()


def test_selections_extend_earlier_ones():
    feats = clusters()
    first = herding(feats, 5, torch.empty(0, dtype=torch.long))
    more = herding(feats, 5, first)
    assert not set(first.tolist()) & set(more.tolist())
    both = herding(feats, 10, torch.empty(0, dtype=torch.long))
    assert torch.equal(torch.cat([first, more]), both)  # greedy: two stages equal one stage of the same budget
    again = kcenter(feats, 4, first)
    assert not set(first.tolist()) & set(again.tolist())
