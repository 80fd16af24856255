"""The evaluation layer: the standard protocol over staged sets (progressive, union, sequential), split across
processes, the random-real and whole-data references, DD-Ranking's scores, cross-architecture runs and the per-stage
report."""

from .protocol import Score, evaluate_synsets, random_real_stages, whole_data_reference
from .report import RunResult
from .run import evaluate_run
from .scores import stage_scores

__all__ = [
    "RunResult",
    "Score",
    "evaluate_run",
    "evaluate_synsets",
    "random_real_stages",
    "stage_scores",
    "whole_data_reference",
]
