"""ConvNet-D{depth}W{width}, the standard backbone of dataset distillation, registered in timm's registry.

depth x [conv3x3(width) -> norm -> ReLU -> AvgPool2d(2)] -> flatten -> Linear. "instance" norm is
GroupNorm(width, width, affine=True), as in the reference code; with it the net has no buffers, so
`torch.func.functional_call` is pure and vmap works. 28 px inputs are padded by 3 in the first conv (treated as 32).
The pooling is `pooling.AvgPool2d`: nn.AvgPool2d's values, in a form that is faster on CPUs.
"""

from __future__ import annotations

import sys

import torch
from timm.models import register_model
from torch import nn

from .pooling import AvgPool2d

NORMS = ("instance", "batch", "none")


def _norm(kind: str, width: int) -> nn.Module:
    if kind == "instance":
        return nn.GroupNorm(width, width, affine=True)
    if kind == "batch":
        return nn.BatchNorm2d(width)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm {kind!r} is not one of {NORMS}")


class ConvNet(nn.Module):
    """The DC/DSA/DM/MTT ConvNet."""

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 3,
        depth: int = 3,
        width: int = 128,
        norm: str = "instance",
        img_size: int = 32,
    ):
        super().__init__()
        self.num_classes = num_classes
        layers: list[nn.Module] = []
        size = 32 if img_size == 28 else img_size
        for d in range(depth):
            pad = 3 if (d == 0 and img_size == 28) else 1
            layers += [
                nn.Conv2d(in_chans if d == 0 else width, width, 3, padding=pad),
                _norm(norm, width),
                nn.ReLU(inplace=True),
                AvgPool2d(2),
            ]
            size //= 2
        if size < 1:
            raise ValueError(f"ConvNet depth {depth} is too deep for {img_size} px images")
        self.features = nn.Sequential(*layers)
        self.num_features = width * size * size
        self.head = nn.Linear(self.num_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).flatten(1)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _make_entrypoint(name: str, depth: int, width: int):
    def entrypoint(pretrained: bool = False, **kwargs) -> ConvNet:
        if pretrained:
            raise ValueError(f"{name} has no pretrained weights")
        for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir", "device", "dtype"):
            kwargs.pop(key, None)
        return ConvNet(depth=kwargs.pop("depth", depth), width=kwargs.pop("width", width), **kwargs)

    entrypoint.__name__ = entrypoint.__qualname__ = name
    entrypoint.__module__ = __name__
    entrypoint.__doc__ = f"ConvNet depth {depth}, width {width}."
    return entrypoint


# convnet_d{1..5}w{16,32,64,128,256}, plus a tiny model for tests.
_ENTRYPOINTS = {f"convnet_d{d}w{w}": (d, w) for d in range(1, 6) for w in (16, 32, 64, 128, 256)}
_ENTRYPOINTS["test_convnet"] = (2, 8)
for _name, (_d, _w) in _ENTRYPOINTS.items():
    setattr(sys.modules[__name__], _name, register_model(_make_entrypoint(_name, _d, _w)))
