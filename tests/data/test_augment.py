"""DSA: reference ranges, per-sample parameters, siamese sharing, gradients on normalised/ZCA data."""

from __future__ import annotations

import pytest
import torch

from hf_condense.data.augment import DSA, FAMILIES, parse_strategy


def one(family):
    return DSA(family)


@pytest.mark.parametrize("family", FAMILIES)
def test_gradients_flow_and_no_clamping(family):
    x = (torch.randn(6, 3, 16, 16) * 3).requires_grad_(True)  # far outside [0, 1], like ZCA data
    y = one(family)(x, torch.Generator().manual_seed(1))
    y.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    if family in ("color", "flip"):
        assert y.detach().abs().max() > 1.5  # not clamped to [0, 1]


@pytest.mark.parametrize("family", FAMILIES)
def test_siamese_applies_the_same_draw_to_batches_of_any_size(family):
    x = torch.randn(1, 3, 16, 16)
    real, syn = x.expand(5, -1, -1, -1).clone(), x.expand(2, -1, -1, -1).clone()
    a, b = DSA(family).siamese(real, syn, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(a[:2], b, atol=1e-6)
    assert torch.allclose(a[0], a[4], atol=1e-6)


def test_parameters_are_per_sample():
    x = torch.randn(1, 1, 16, 16).expand(64, -1, -1, -1).clone()
    y = DSA("rotate")(x, torch.Generator().manual_seed(0))
    assert not torch.allclose(y[0], y[1])


def test_reference_ranges():
    g = torch.Generator().manual_seed(0)
    p = DSA("color").sample(4000, (32, 32), g)
    assert -0.5 <= p.values["brightness"].min() and p.values["brightness"].max() < 0.5
    assert 0 <= p.values["saturation"].min() and p.values["saturation"].max() < 2
    assert 0.5 <= p.values["contrast"].min() and p.values["contrast"].max() < 1.5
    p = DSA("crop").sample(4000, (32, 32), g)
    assert p.values["dx"].min() == -4 and p.values["dx"].max() == 4
    p = DSA("scale").sample(4000, (32, 32), g)
    assert p.values["sx"].min() >= 1 / 1.2 - 1e-6 and p.values["sx"].max() <= 1.2 + 1e-6
    p = DSA("rotate").sample(4000, (32, 32), g)
    assert p.values["theta"].abs().max() <= 15 / 180 * torch.pi + 1e-6


def test_crop_is_an_exact_integer_shift_with_zero_fill():
    x = torch.arange(64.0).view(1, 1, 8, 8) + 1
    aug = DSA("crop")
    p = aug.sample(1, (8, 8))
    p.values = {"dy": torch.tensor([1]), "dx": torch.tensor([-1])}
    y = aug.apply(x, p)
    assert torch.equal(y[0, 0, 1:, :-1], x[0, 0, :-1, 1:])
    assert y[0, 0, 0].abs().sum() == 0 and y[0, 0, :, -1].abs().sum() == 0


def test_cutout_zeroes_a_half_size_square():
    x = torch.ones(1, 1, 32, 32)
    aug = DSA("cutout")
    p = aug.sample(1, (32, 32))
    p.values = {"cy": torch.tensor([16]), "cx": torch.tensor([16])}
    assert (aug.apply(x, p) == 0).sum() == 16 * 16


def test_unknown_family_and_none():
    with pytest.raises(ValueError, match="blur"):
        parse_strategy("color_blur")
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(DSA("none")(x), x) and not DSA("none").enabled


def test_params_moved_ahead_augment_alike():
    """MTT moves a trajectory's parameters to the device once (AugParams.to); applying them must not change."""
    dsa, x = DSA(), torch.randn(6, 3, 16, 16)
    for seed in range(12):  # every family is drawn within a few seeds
        p = dsa.sample(len(x), (16, 16), torch.Generator().manual_seed(seed))
        moved = p.to("cpu")
        assert moved.family == p.family and moved.values.keys() == p.values.keys()
        assert torch.equal(dsa.apply(x, moved), dsa.apply(x, p))
