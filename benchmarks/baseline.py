"""The speed benchmarks' "plain" network: the ConvNet with ATen's avg_pool2d, as before `pooling.AvgPool2d`."""

from __future__ import annotations

from torch import nn

from hf_condense.models.pooling import AvgPool2d


def aten_pooling(model: nn.Module) -> nn.Module:
    """`model` with every `pooling.AvgPool2d` swapped back for nn.AvgPool2d (same values; no parameters move)."""
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, AvgPool2d):
                setattr(parent, name, nn.AvgPool2d(child.kernel_size))
    return model
