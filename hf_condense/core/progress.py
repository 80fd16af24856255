"""What a long run shows while it works: one line when a phase starts, a bar with rate and ETA while it runs, a line
with its time when it ends, and (optionally) the values it reports logged to the run's trackers.

Only the main process prints (accelerate's tqdm, `main_process_only`). The bar is first drawn at its first update,
so it never sits at `0/N [?, ?it/s]`: every line drawn has a rate and an ETA. Redraws are at most once a second on
a terminal and once every 30 s into a log file (`HF_CONDENSE_PROGRESS_INTERVAL` overrides, in seconds). Bars go to
stdout with the run's other lines: `accelerate launch` relays a child's stderr through a pipe, so a bar on stderr
would land out of order with them (after its phase's end line) in a log of both streams.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator

from accelerate.state import PartialState
from accelerate.utils import tqdm

LogFn = Callable[..., None]  # accelerator.log(values: dict, step=int)


def interval() -> float:
    """Seconds between two redraws of a bar."""
    if "HF_CONDENSE_PROGRESS_INTERVAL" in os.environ:
        return float(os.environ["HF_CONDENSE_PROGRESS_INTERVAL"])
    return 1.0 if sys.stdout.isatty() else 30.0


def is_main_process() -> bool:
    return PartialState().is_main_process


def duration(seconds: float) -> str:
    """12.3s, 4m05s, 2h03m."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s" if m < 60 else f"{m // 60}h{m % 60:02d}m"


class Progress:
    """One phase of a run as a context manager: `with Progress("experts", total=24, unit="epoch") as p: p.update()`.

    `update(n, **values)` advances the bar by n units; the values (e.g. loss, accuracy) show on the bar and, when
    `log` is given, go to the trackers as `<tag>/<name>` at step = units done so far (tag: `desc` with underscores).
    """

    def __init__(
        self,
        desc: str,
        total: int,
        unit: str = "it",
        initial: int = 0,
        detail: str = "",
        log: LogFn | None = None,
        tag: str | None = None,
        quiet: bool = False,
    ):
        self.desc, self.total, self.unit, self.initial, self.detail = desc, total, unit, initial, detail
        self.log, self.tag = log, tag or desc.replace(" ", "_")
        self.n = initial
        self.quiet = quiet or not is_main_process()
        self.bar = None
        self.seconds = 0.0

    def __enter__(self) -> Progress:
        self.t0 = time.perf_counter()
        if not self.quiet:
            print(f"{self.desc}: {self.detail or f'{self.total - self.initial} {self.unit}(s)'}", flush=True)
        self.bar = tqdm(
            total=self.total,
            initial=self.initial,
            desc=self.desc,
            unit=self.unit,
            mininterval=interval(),
            delay=1e-9,  # no 0/N [?, ?it/s] line: the first draw comes with the first update
            dynamic_ncols=True,
            file=sys.stdout,
            main_process_only=True,
            disable=self.quiet,
        )
        return self

    def update(self, n: int = 1, **values: float) -> None:
        self.n += n
        if values:
            if self.log is not None:
                self.log({f"{self.tag}/{k}": v for k, v in values.items()}, step=self.n)
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in values.items()}, refresh=False)
        self.bar.update(n)

    def __exit__(self, *exc) -> None:
        self.bar.close()
        self.seconds = time.perf_counter() - self.t0
        if not self.quiet and exc[0] is None:
            print(f"{self.desc}: done in {duration(self.seconds)}", flush=True)


@contextlib.contextmanager
def quiet_datasets() -> Iterator[None]:
    """`datasets` without its own progress bars (one per stage parquet written or read would bury the run's)."""
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        yield
    finally:
        if not was:
            enable_progress_bars()
