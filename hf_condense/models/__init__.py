"""The models layer: networks only through timm (importing this registers the ConvNet family), their parameters as
flat vectors for functional unrolls, and the loops that train and test one or several of them."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import timm
from torch import nn

from ..core.config import opt
from . import convnet  # noqa: F401  (registers convnet_* in timm)
from .convnet import ConvNet


@dataclass
class ModelConfig:
    """The network, named as in timm's registry (the built-in ConvNets are registered there)."""

    name: str = opt("convnet_d3w128", help="timm model name, e.g. convnet_d3w128, test_convnet, resnet18.")
    kwargs: dict[str, Any] = opt(default_factory=dict, help="Extra keyword arguments for timm.create_model.")
    small_stem: bool = opt(False, help="ResNets: 3x3 stride-1 stem and no max-pool, for 32 px images.")


def _small_stem(model: nn.Module, name: str) -> nn.Module:
    """CIFAR-style stem for timm ResNets: 3x3 stride-1 conv1 and no max-pool."""
    conv = getattr(model, "conv1", None)
    if not isinstance(conv, nn.Conv2d) or not hasattr(model, "maxpool"):
        raise ValueError(f"model.small_stem: {name!r} has no ResNet stem (conv1 + maxpool) to replace")
    model.conv1 = nn.Conv2d(conv.in_channels, conv.out_channels, 3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


def build_model(cfg: ModelConfig, num_classes: int, in_chans: int, img_size: int) -> nn.Module:
    """Create the recipe's model with timm; ConvNets get the image size, ResNets an optional small stem."""
    kwargs = dict(cfg.kwargs)
    if cfg.name.startswith(("convnet_", "test_convnet")):
        kwargs.setdefault("img_size", img_size)
    model = timm.create_model(cfg.name, num_classes=num_classes, in_chans=in_chans, **kwargs)
    return _small_stem(model, cfg.name) if cfg.small_stem else model


@functools.lru_cache(maxsize=1)
def model_names() -> frozenset[str]:
    """Every model name in timm's registry (the ConvNet family included)."""
    return frozenset(timm.list_models())


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["ConvNet", "ModelConfig", "build_model", "count_parameters", "model_names"]
