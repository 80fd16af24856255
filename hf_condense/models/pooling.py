"""k x k average pooling that is fast in CPU training steps, for the ConvNet.

ATen's avg_pool2d kernel for NCHW tensors is slow on CPUs, several times slower than the same mean as a depthwise
convolution with weights 1/k^2, which oneDNN runs. So within `as_convolution()` (the library's first-order training and
test loops), on CPUs in float32, for inputs of at least MIN_ELEMENTS values, `AvgPool2d` is that convolution, with the
matching transposed convolution as its derivative: bitwise the same values and gradients as nn.AvgPool2d here (scaling
by 1/4 is exact), and faster expert epochs (benchmarks/results/expert_speed.md). Elsewhere ATen's op: where the
backward is differentiated again (MTT's unroll, gradient matching) the convolution form was slower
(benchmarks/results/unroll_speed.md), on GPUs ATen's kernel is fast, and where torch.compile traces, inductor fuses
ATen's op with its neighbours (as convolutions a compiled expert epoch was slower).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

# inputs from this size: below it oneDNN's per-call cost outweighs the kernel (measured on digits-sized steps, where
# the convolution was slower than ATen's op up to about this many values)
MIN_ELEMENTS = 1 << 19
_AS_CONVOLUTION = contextvars.ContextVar("hf_condense_pooling_as_convolution", default=False)


@contextlib.contextmanager
def as_convolution() -> Iterator[None]:
    """Within: CPU float32 pooling as the depthwise convolution, for steps whose backward is not differentiated."""
    token = _AS_CONVOLUTION.set(True)
    try:
        yield
    finally:
        _AS_CONVOLUTION.reset(token)


def _weight(x: torch.Tensor, k: int) -> torch.Tensor:
    return torch.full((x.shape[1], 1, k, k), 1.0 / (k * k), dtype=x.dtype, device=x.device)


class _Mean(torch.autograd.Function):
    """x -> its k x k means (stride k, floor), as a depthwise convolution; the derivative is `_Spread`."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor, k: int) -> torch.Tensor:
        return F.conv2d(x, _weight(x, k), stride=k, groups=x.shape[1])

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, ctx.k = inputs
        ctx.rest = (x.shape[-2] - output.shape[-2] * ctx.k, x.shape[-1] - output.shape[-1] * ctx.k)

    @staticmethod
    def backward(ctx, grad):
        return _Spread.apply(grad, ctx.k, ctx.rest), None

    @staticmethod
    def jvp(ctx, tangent, _k):
        return _Mean.apply(tangent, ctx.k)


class _Spread(torch.autograd.Function):
    """The transpose of `_Mean`: each value spread over its k x k window times 1/k^2, `rest` rows and columns of
    zeros where the floor dropped them; the derivative is `_Mean`."""

    generate_vmap_rule = True

    @staticmethod
    def forward(g: torch.Tensor, k: int, rest: tuple[int, int]) -> torch.Tensor:
        return F.conv_transpose2d(g, _weight(g, k), stride=k, groups=g.shape[1], output_padding=rest)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, ctx.k, ctx.rest = inputs

    @staticmethod
    def backward(ctx, grad):
        return _Mean.apply(grad, ctx.k), None, None

    @staticmethod
    def jvp(ctx, tangent, _k, _rest):
        return _Spread.apply(tangent, ctx.k, ctx.rest)


class AvgPool2d(nn.AvgPool2d):
    """nn.AvgPool2d(k) (stride k, no padding); a depthwise convolution within `as_convolution()` (see module doc)."""

    def __init__(self, kernel_size: int):
        super().__init__(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _AS_CONVOLUTION.get() and self._fast_here(x):
            return _Mean.apply(x, self.kernel_size)
        return super().forward(x)

    @staticmethod
    def _fast_here(x: torch.Tensor) -> bool:
        """Whether the convolution form pays for x: CPU float32 NCHW through oneDNN, large enough, not traced."""
        cpu_float = x.device.type == "cpu" and x.dtype == torch.float32 and torch.backends.mkldnn.enabled
        return cpu_float and x.dim() == 4 and x.numel() >= MIN_ELEMENTS and not torch.compiler.is_compiling()
