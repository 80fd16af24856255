"""torch.compile of first-order training steps (experts, evaluation runs, PDD transitions), chosen from the work.

Inductor fuses the ConvNet's many small element-wise kernels (norm, ReLU, pooling and their backward), which bound
training on a CPU for narrow networks (faster than eager at ConvNet-D3W32, not at D3W128, whose convolutions dominate:
benchmarks/results/expert_speed.md). Compiling costs tens of seconds per architecture and batch shape in a process
(fresh networks of one architecture reuse it), so the rule compiles on CPUs only for jobs of at least
COMPILE_MIN_EXAMPLES examples of networks whose largest activation is at most COMPILE_MAX_ACTIVATION bytes per example;
GPUs stay eager unless the recipe asks. Same results up to float round-off, so stage hashes and cache keys leave it
out. Where compiling fails (no C++ compiler, an unsupported layer), training runs eagerly after one warning.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from .chunking import activation_bytes

logger = logging.getLogger("hf_condense.compile")
# examples trained (epochs x set size x networks) from which compiling pays on a CPU: about 3x the break-even
# measured at W32 (benchmarks/results/expert_speed.md), more at wider networks
COMPILE_MIN_EXAMPLES = 1_000_000
# largest activation per example: ConvNet-D3W32 at 32 px (128 KiB) gained over eager, D3W128 (512 KiB) did not
COMPILE_MAX_ACTIVATION = 256 << 10
COMPILE_HELP = "Train with torch.compile (same result up to float round-off)"
_failed: list[str] = []  # why compiling failed in this process, once it has


def should_compile(
    requested: bool | None, device: torch.device | str, examples: int, model: nn.Module, x: torch.Tensor
) -> bool:
    """Whether a job training `model` on `examples` examples shaped like x[0] compiles: `requested` when set, else
    the CPU rule; never once compiling has failed in this process."""
    if _failed:
        return False
    if requested is not None:
        return requested
    if torch.device(device).type != "cpu" or examples < COMPILE_MIN_EXAMPLES:
        return False
    return activation_bytes(model, x.to("cpu")) <= COMPILE_MAX_ACTIVATION


def compiled(model: nn.Module) -> nn.Module:
    """`model`'s compiled forward (a wrapper sharing its parameters; the module itself stays eager, so functional
    calls of it, such as MTT's double-backward unroll, are unaffected); `model` itself once compiling has failed."""
    return model if _failed else torch.compile(model)


def compile_failed(error: Exception) -> None:
    """Record that compiling failed: one warning, and eager training for the rest of the process."""
    if not _failed:
        why = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        logger.warning(f"torch.compile failed here ({why}); training eagerly")
        _failed.append(why)


def compiling_failed() -> bool:
    """Whether compiling has failed in this process (everything then runs eagerly)."""
    return bool(_failed)


def describe(requested: bool | None, chosen: bool) -> str:
    """How a progress line and metadata name the choice, e.g. 'compiled (auto)', 'eager (recipe)'."""
    return f"{'compiled' if chosen else 'eager'} ({'auto' if requested is None else 'recipe'})"
