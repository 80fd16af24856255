"""DD-Ranking's scores beside plain accuracy (NUS-HPC-AI-Lab/DD-Ranking, arXiv 2505.13300), per stage.

Accuracies are fractions in [0, 1], at the same budget and under the same protocol:
- IOR, improvement over random: acc(distilled) - acc(random real images of the same budget);
- HLR, hard-label recovery: acc(whole train set) - acc(distilled, trained on hard labels);
- LRS, label-robust score: (e^a - e^-1) / (e - e^-1) with a = w * IOR - (1 - w) * HLR, w = 0.5; in [0, 1], higher is
  better. Soft labels or heavy augmentation then cannot pass for better data.
"""

from __future__ import annotations

import math

W = 0.5


def lrs(ior: float, hlr: float, w: float = W) -> float:
    a = w * ior - (1 - w) * hlr
    return (math.exp(a) - math.exp(-1)) / (math.e - math.exp(-1))


def stage_scores(
    distilled: list[float], random_real: list[float] | None, whole: float | None, hard: list[float] | None = None
) -> list[dict]:
    """Per stage {ior, hlr, lrs} from mean accuracies; a score is None where its reference was not evaluated.
    `hard`: the distilled sets' accuracies with hard labels (default: `distilled`, for sets without soft labels)."""
    hard = hard if hard is not None else distilled
    out = []
    for k, acc in enumerate(distilled):
        ior = acc - random_real[k] if random_real else None
        hlr = whole - hard[k] if whole is not None else None
        out.append({"ior": ior, "hlr": hlr, "lrs": lrs(ior, hlr) if ior is not None and hlr is not None else None})
    return out
