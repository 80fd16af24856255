"""What a run reports: per stage, the accuracy of the distilled images beside random real images of the same budget,
and the whole train set as the ceiling."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..methods import SynSet
from .protocol import Score


@dataclass
class RunResult:
    """What a run produced: the stages, their scores and the references."""

    folder: Path
    stages: list[SynSet]
    distilled: list[Score] = field(default_factory=list)
    random_real: list[Score] = field(default_factory=list)
    whole_data: Score | None = None
    seconds: float = 0.0

    def table(self) -> str:
        def pct(s):
            return f"{100 * s[0]:6.2f} ± {100 * s[1]:5.2f}" if s else "       –       "

        lines = [
            f"{'stage':>6} {'IPC':>4} {'images':>6} {'lr':>9} {'accuracy (%)':>16} {'random real (%)':>16} "
            f"{'time (s)':>9}"
        ]
        cum = 0
        for i, s in enumerate(self.stages):
            cum += s.meta.get("ipc", 0)
            lines.append(
                f"{i + 1:>6} {cum:>4} {len(s.images):>6} {s.lr:>9.4g} "
                f"{pct(self.distilled[i] if i < len(self.distilled) else None):>16} "
                f"{pct(self.random_real[i] if i < len(self.random_real) else None):>16} "
                f"{s.meta.get('seconds', 0):>9.1f}"
            )
        if self.whole_data:
            lines.append(f"whole train set: {pct(self.whole_data).strip()} %")
        return "\n".join(lines)
