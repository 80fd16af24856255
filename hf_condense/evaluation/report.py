"""What a run reports: per stage, the accuracy of the distilled images beside random real images of the same budget,
DD-Ranking's scores, the other architectures evaluated, and the whole train set as the ceiling."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..methods import SynSet
from .protocol import Score
from .scores import stage_scores


@dataclass
class RunResult:
    """What a run produced: the stages, their scores (on the run's model and on each of `models`) and the
    references."""

    folder: Path
    stages: list[SynSet]
    distilled: list[Score] = field(default_factory=list)
    random_real: list[Score] = field(default_factory=list)
    whole_data: Score | None = None
    hard_labels: list[Score] = field(default_factory=list)  # soft-label stages retrained on hard labels (HLR)
    models: dict[str, dict[str, list[Score]]] = field(default_factory=dict)  # name -> distilled / random_real
    seconds: float = 0.0

    def scores(self) -> list[dict]:
        """Per stage IOR, HLR and LRS on the run's model (None where a reference is missing)."""
        return stage_scores(
            [m for m, _ in self.distilled],
            [m for m, _ in self.random_real] or None,
            self.whole_data[0] if self.whole_data else None,
            [m for m, _ in self.hard_labels] or None,
        )

    def model_ior(self, name: str) -> list[float | None]:
        r = self.models[name]
        rand = r.get("random_real") or []
        return [m - rand[k][0] if k < len(rand) else None for k, (m, _) in enumerate(r["distilled"])]

    def to_json(self) -> dict:
        """The results.json fields of this result (accuracies as fractions)."""
        return {
            "distilled": [list(s) for s in self.distilled],
            "random_real": [list(s) for s in self.random_real],
            "whole_data": list(self.whole_data) if self.whole_data else None,
            "hard_labels": [list(s) for s in self.hard_labels] or None,
            "scores": self.scores() if self.distilled else [],
            "models": {
                name: {**{k: [list(s) for s in v] for k, v in r.items()}, "ior": self.model_ior(name)}
                for name, r in self.models.items()
            },
        }

    def table(self) -> str:
        def pct(s):
            return f"{100 * s[0]:6.2f} ± {100 * s[1]:5.2f}" if s else "       –       "

        def pts(v):
            return f"{100 * v:+.2f}" if v is not None else "–"

        def at(lst, i):
            return lst[i] if i < len(lst) else None

        scores = self.scores() if self.distilled else []
        show_hlr = self.whole_data is not None
        head = f"{'stage':>6} {'IPC':>4} {'images':>6} {'lr':>9} {'accuracy (%)':>16} {'random real (%)':>16}"
        head += f" {'IOR':>7}" + (f" {'HLR':>7} {'LRS':>6}" if show_hlr else "")
        head += "".join(f" {name[:18] + ' (%, IOR)':>28}" for name in self.models)
        lines = [head + f" {'time (s)':>9}"]
        cum = 0
        for i, s in enumerate(self.stages):
            cum += s.meta.get("ipc", 0)
            sc = at(scores, i) or {}
            line = (
                f"{i + 1:>6} {cum:>4} {len(s.images):>6} {s.lr:>9.4g} {pct(at(self.distilled, i)):>16} "
                f"{pct(at(self.random_real, i)):>16} {pts(sc.get('ior')):>7}"
            )
            if show_hlr:
                lrs = sc.get("lrs")
                line += f" {pts(sc.get('hlr')):>7} {f'{lrs:.3f}' if lrs is not None else '–':>6}"
            for name, r in self.models.items():
                ior = at(self.model_ior(name), i)
                line += f" {pct(at(r['distilled'], i)) + (f' ({pts(ior)})' if ior is not None else ''):>28}"
            lines.append(line + f" {s.meta.get('seconds', 0):>9.1f}")
        if self.whole_data:
            lines.append(f"whole train set: {pct(self.whole_data).strip()} %")
        if scores:
            lines.append("IOR: accuracy - random real; HLR: whole train set - accuracy (hard labels); LRS: DD-Ranking")
        return "\n".join(lines)
