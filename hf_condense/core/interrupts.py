"""Interrupts as exceptions, once: Ctrl-C raises KeyboardInterrupt and SIGTERM `Terminated`, and a repeat that follows
within `REPEAT_GRACE_S` is ignored, so that the short save made while the first unwinds is not cut off.

A second signal usually follows the first: `accelerate launch` answers the terminal's Ctrl-C (which its child gets
too) by sending the child SIGTERM and, 5 s later, SIGKILL; a batch scheduler that preempts a job sends SIGTERM to
every process of it, and the launcher passes its own on to the child.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

REPEAT_GRACE_S = 5.0  # accelerate launch's wait between its SIGTERM and SIGKILL


class Terminated(KeyboardInterrupt):
    """SIGTERM (preemption, `timeout`, a launcher stopping its child): a KeyboardInterrupt, so that whatever handles
    Ctrl-C handles it too."""


@contextmanager
def interrupts_raise() -> Iterator[None]:
    """Within the block, SIGINT raises KeyboardInterrupt and SIGTERM `Terminated`, and a signal within
    `REPEAT_GRACE_S` of the one raised is ignored. Main thread only (elsewhere the block runs unchanged)."""
    if threading.current_thread() is not threading.main_thread():  # handlers can be set there only
        yield
        return
    raised_at = -REPEAT_GRACE_S

    def handler(signum, frame):
        nonlocal raised_at
        if time.monotonic() - raised_at < REPEAT_GRACE_S:
            return
        raised_at = time.monotonic()
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
