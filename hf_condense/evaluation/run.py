"""A finished run's whole evaluation: the stages on the run's model and on every `evaluation.models` architecture,
each beside random real images of the same budget, the whole-data ceiling, and the hard-label retraining that
DD-Ranking's HLR needs for soft-label stages."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..methods import SynSet
from ..methods.context import RunContext
from ..stages.recipe import EvalConfig
from .protocol import RANDOM_REAL_SALT, evaluate_synsets, random_real_stages, whole_data_reference
from .report import RunResult


def evaluate_run(ctx: RunContext, ev: EvalConfig, run_seed: int, stages: list[SynSet], folder: Path) -> RunResult:
    """Every evaluation a recipe asks for, in the order a user reads the table. Cross-architecture models train on the
    very images and preprocessing of the run (only the network changes), with the same seeds and schedule."""
    result = RunResult(folder, stages)
    rand = None
    if ev.random_real:
        ipcs, epochs = [s.meta["ipc"] for s in stages], [s.meta["epochs"] for s in stages]
        rand = random_real_stages(ctx, run_seed, ipcs, epochs, ev.lr)
    for name in [None, *ev.models]:
        distilled = evaluate_synsets(ctx, ev, run_seed, stages, model=name)
        random_real = evaluate_synsets(ctx, ev, run_seed, rand, model=name, salt=RANDOM_REAL_SALT) if rand else []
        if name is None:
            result.distilled, result.random_real = distilled, random_real
        else:
            result.models[name] = {"distilled": distilled, "random_real": random_real}
    if ev.whole_data:
        result.whole_data = whole_data_reference(ctx, ev, run_seed)
        if any(s.soft_labels is not None for s in stages):  # HLR is defined on hard labels
            hard = [replace(s, soft_labels=None) for s in stages]
            desc = f"evaluation hard_labels {ctx.model.name}"
            result.hard_labels = evaluate_synsets(ctx, ev, run_seed, hard, desc=desc)
    return result
