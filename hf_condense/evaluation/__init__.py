"""The evaluation layer: the standard protocol over staged sets (progressive, union, sequential), split across
processes, the random-real and whole-data references, and the per-stage report."""

from .protocol import Score, evaluate_synsets, random_real_stages, whole_data_reference
from .report import RunResult

__all__ = ["RunResult", "Score", "evaluate_synsets", "random_real_stages", "whole_data_reference"]
