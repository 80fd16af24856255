"""torch.compile of first-order training steps (experts, evaluation runs, PDD transitions), chosen from the work.

Inductor fuses the ConvNet's many small element-wise kernels (norm, ReLU, pooling and their backward), which bound
training on a CPU (benchmarks/results/unroll_speed.md: a Fashion-MNIST expert epoch about 2x faster at W32, 1.3x at
W128). Compiling costs ~20-50 s per architecture and batch shape in a process (fresh networks of one architecture
reuse it), so the rule compiles on CPUs only for jobs of at least COMPILE_MIN_EXAMPLES training examples; GPUs stay
eager unless the recipe asks. Same results up to float round-off, so stage hashes and cache keys leave it out.
Where compiling fails (no C++ compiler, an unsupported layer), training runs eagerly after one warning.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

logger = logging.getLogger("hf_condense.compile")
# examples trained (epochs x set size x networks) from which compiling pays on a CPU: about 3x the break-even
# measured at W32 (~40 s of compiling against ~0.4 ms saved per example), more at wider networks
COMPILE_MIN_EXAMPLES = 250_000
COMPILE_HELP = "Train with torch.compile (same result up to float round-off)"
_failed: list[str] = []  # why compiling failed in this process, once it has


def should_compile(requested: bool | None, device: torch.device | str, examples: int) -> bool:
    """Whether a training job of `examples` examples compiles: `requested` when set, else the CPU rule; never
    once compiling has failed in this process."""
    if _failed:
        return False
    if requested is not None:
        return requested
    return torch.device(device).type == "cpu" and examples >= COMPILE_MIN_EXAMPLES


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


def describe(requested: bool | None, chosen: bool) -> str:
    """How a progress line and metadata name the choice, e.g. 'compiled (auto)', 'eager (recipe)'."""
    return f"{'compiled' if chosen else 'eager'} ({'auto' if requested is None else 'recipe'})"
