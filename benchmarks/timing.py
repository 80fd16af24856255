"""Wall-clock timing that counts queued GPU work: the benchmarks' one place for CUDA synchronisation."""

from __future__ import annotations

import time

import torch


def sync(device: str) -> None:
    """Wait for queued GPU work, so that wall-clock timers measure it."""
    if device == "cuda":
        torch.cuda.synchronize()


def seconds_since(t0: float, device: str) -> float:
    """Seconds since perf_counter() read t0, once queued GPU work is done."""
    sync(device)
    return time.perf_counter() - t0
