"""Models: the ConvNet family in timm's registry, exactly as the reference describes."""

from __future__ import annotations

import pytest
import timm
import torch

import hf_condense  # noqa: F401  (registers the family)
from hf_condense.models import ModelConfig, build_model, count_parameters
from hf_condense.models.functional import FlatParams

FAMILY = sorted(timm.list_models("convnet_*")) + ["test_convnet"]


def test_parameter_count_matches_reference():
    model = timm.create_model("convnet_d3w128", num_classes=10, in_chans=3)
    assert count_parameters(model) == 320_010
    assert not list(model.buffers())  # instance norm as GroupNorm(C, C): no buffers


@pytest.mark.parametrize("name", FAMILY)
def test_every_registered_convnet_builds_and_runs(name):
    depth = 2 if name == "test_convnet" else int(name.split("_d")[1][0])
    size = 32 if depth <= 5 else 64
    model = timm.create_model(name, num_classes=7, in_chans=1, img_size=size)
    assert model(torch.randn(2, 1, size, size)).shape == (2, 7)


def test_28px_inputs_are_padded_like_32px():
    m28 = timm.create_model("convnet_d3w32", num_classes=10, in_chans=1, img_size=28)
    m32 = timm.create_model("convnet_d3w32", num_classes=10, in_chans=1, img_size=32)
    assert count_parameters(m28) == count_parameters(m32)
    assert m28.features[0].padding == (3, 3)


@pytest.mark.parametrize("norm", ["instance", "batch", "none"])
def test_norm_choices(norm):
    model = build_model(ModelConfig(name="convnet_d3w16", kwargs={"norm": norm}), 10, 3, 32)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_timm_resnet_with_small_stem():
    model = build_model(ModelConfig(name="resnet18", small_stem=True), 10, 3, 32)
    assert model.conv1.stride == (1, 1) and isinstance(model.maxpool, torch.nn.Identity)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_small_stem_refuses_models_without_one():
    with pytest.raises(ValueError, match="no ResNet stem"):
        build_model(ModelConfig(name="convnet_d3w16", small_stem=True), 10, 3, 32)


def test_flat_params_functional_call_is_pure():
    model = timm.create_model("convnet_d2w16", num_classes=10, in_chans=1, img_size=8)
    flat = FlatParams(model)
    theta = flat.flatten()
    x = torch.randn(4, 1, 8, 8)
    assert torch.allclose(flat(theta, x), model(x))
    assert flat(theta + 1.0, x).shape == (4, 10)
    assert torch.equal(flat.flatten(), theta)  # running on other params leaves the module alone
    snap = flat.flatten()
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    assert not torch.equal(flat.flatten(), snap)  # snapshots are copies, never aliases
