"""CPU micro-batching: how many examples one forward/backward of a training step or of an unroll step runs at once.

A batch split into chunks whose gradients are summed gives the batch's gradient up to float round-off for networks
without batch statistics, and each chunk's activations stay in the CPU caches, which is faster there
(benchmarks/unroll_speed.py: ConvNet-D3W32/W128 on CIFAR-10 shapes). The rule, measured there: on a CPU, chunks
whose largest activation is about CHUNK_BYTES[kind]; on GPUs the whole batch (their kernels want large batches).
A recipe value always wins: n examples per chunk, or 0 for the whole batch.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from .functional import buffer_free

Kind = Literal["train", "compiled", "unroll"]
# the largest activation of one chunk, in bytes: training steps (first order; compiled ones fuse their element-wise
# kernels and want larger chunks) and unroll steps (double backward).
# Measured (benchmarks/results/unroll_speed.md, 2 cores, time against the whole batch): unroll IPC 10, W32: 16 0.93,
# 32 0.77; W128: 8 0.59, 16 0.63, 32 0.62; training at batch 256: W32 32 0.97, 64 0.87; W128 16 0.75, 64 0.71;
# compiled training (images/s): W32 64 1900, 256 2800; W128 16 301, 64 305, 256 270. The latest run (ConvNet pooling
# as convolutions in training, the same unroll): unroll W32 32 1.03, W128 8 0.82, 32 0.75; training W32 64 0.68,
# W128 16 0.89, 64 0.77 (this machine moves these ratios between runs; not retuned on one run)
CHUNK_BYTES: dict[str, int] = {"train": 8 << 20, "compiled": 32 << 20, "unroll": 4 << 20}
MICRO_BATCH_HELP = "Examples per forward/backward chunk, gradients summed (same result up to float round-off)"
_ACTIVATION_BYTES: dict[tuple, int] = {}


def activation_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """The largest output of any leaf module of `model` for one example shaped like x[0], in bytes (cached per
    architecture and input shape; measured once under no_grad, with the random state restored)."""
    key = (type(model).__qualname__, tuple(tuple(p.shape) for p in model.parameters()), tuple(x.shape[1:]), x.dtype)
    if key not in _ACTIVATION_BYTES:
        sizes = [x[:1].numel() * x.element_size()]

        def record(_module, _inputs, out):
            if isinstance(out, torch.Tensor):
                sizes.append(out.numel() * out.element_size())

        leaves = [m for m in model.modules() if next(m.children(), None) is None]
        hooks = [m.register_forward_hook(record) for m in leaves]
        try:
            with torch.no_grad(), torch.random.fork_rng(devices=[]):
                model(x[:1].detach())
        finally:
            for h in hooks:
                h.remove()
        _ACTIVATION_BYTES[key] = max(sizes)
    return _ACTIVATION_BYTES[key]


def micro_batch(requested: int | None, model: nn.Module, x: torch.Tensor, kind: Kind) -> int | None:
    """Examples per chunk for a step of `model` on the batch `x` (None: the whole batch at once): `requested` when
    set (0: the whole batch), else the rule (CPU and a buffer-free model: chunks of about CHUNK_BYTES[kind])."""
    if requested is not None:
        return requested if 0 < requested < len(x) else None
    if x.device.type != "cpu" or not buffer_free(model):  # batch statistics would differ between chunks
        return None
    size = max(1, CHUNK_BYTES[kind] // activation_bytes(model, x))
    return size if size < len(x) else None


def describe(requested: int | None, chosen: int | None) -> str:
    """How a stage line and its metadata name the choice, e.g. '10 (auto)', 'whole batch (recipe)'."""
    return f"{chosen or 'whole batch'} ({'auto' if requested is None else 'recipe'})"
