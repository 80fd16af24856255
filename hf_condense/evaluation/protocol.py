"""Evaluation of staged sets under the standard protocol, split across processes, with the two references beside
every result: random real images of the same budget, and the whole train set."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

import torch

from ..methods import METHODS, StageTask, SynSet, method_config
from ..methods.context import RunContext
from ..models.runs import protocol_seeds
from ..models.training import TrainSchedule, fit, make_optimizer, test_accuracy
from ..stages.recipe import EvalConfig

Score = tuple[float, float]  # mean, std of test accuracy in [0, 1]
DISTILLED_SALT, RANDOM_REAL_SALT, WHOLE_DATA_SALT = 0, 1, 99  # each reference gets networks of its own


def mean_std(values: Sequence[float]) -> Score:
    return (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0)


def evaluate_synsets(
    ctx: RunContext,
    ev: EvalConfig,
    run_seed: int,
    synsets: Sequence[SynSet],
    mode: str | None = None,
    model: str | None = None,
    salt: int = DISTILLED_SALT,
    runs: int | None = None,
    desc: str | None = None,
) -> list[Score]:
    """Mean and std test accuracy after each stage over `runs` (default `ev.runs`) fresh networks; `desc` names the
    phase on the console and in the trackers (default: what is evaluated, on which model)."""
    seeds = protocol_seeds(run_seed, salt, runs or ev.runs)
    what = {DISTILLED_SALT: "distilled", RANDOM_REAL_SALT: "random_real"}.get(salt, f"set_{salt}")
    scores = ctx.train_and_test(
        synsets,
        ev.schedule(),
        mode or ev.mode,
        seeds,
        model,
        ev.vectorize,
        ev.test_batch_size,
        desc=desc or f"evaluation {what} {model or ctx.model.name}",
    )
    return [mean_std([r[k] for r in scores]) for k in range(len(synsets))]


def random_real_stages(ctx: RunContext, run_seed: int, ipcs: Sequence[int], epochs: Sequence[int], lr: float):
    """Random real images with the same per-stage budget (and evaluation lr), extending stage by stage."""
    distiller = METHODS["random"].distiller(ctx)
    stages: list[SynSet] = []
    for k, ipc in enumerate(ipcs, start=1):
        task = StageTask(
            stage=k,
            ipc=ipc,
            config=method_config("random"),
            previous=stages,
            conditioning=True,
            transition=False,
            boost_beta=0.0,
            pool=ctx.class_indices,
            seed=run_seed + 7919 * k,
            train=TrainSchedule(lr=lr),
            run_seed=run_seed,
        )
        s = distiller.distill(task).stage
        s.meta["epochs"] = epochs[k - 1]
        stages.append(s)
    return stages


def whole_data_reference(ctx: RunContext, ev: EvalConfig, run_seed: int) -> Score:
    """The run's network trained on the whole train split (protocol optimiser, `whole_data_epochs`)."""
    schedule = ev.schedule()

    def one(seed: int, bar) -> float:
        torch.manual_seed(seed)
        model = ctx.make_model().to(ctx.device)
        g = torch.Generator().manual_seed(seed)
        fit(
            model,
            make_optimizer(model, schedule, ev.lr),
            ctx.train_x,
            ctx.train_y,
            ev.whole_data_epochs,
            ev.lr,
            schedule,
            ctx.dsa if ev.augment else None,
            g,
            ctx.device,
            bar.update,
        )
        return test_accuracy(model, ctx.test_x, ctx.test_y, ctx.device, ev.test_batch_size)

    def mine(seeds: list[int]) -> list[float]:
        detail = f"{ev.runs} network(s) x {ev.whole_data_epochs} epoch(s) on {len(ctx.train_y)} images"
        with ctx.progress(
            f"evaluation whole_data {ctx.model.name}", len(seeds) * ev.whole_data_epochs, "epoch", detail=detail
        ) as bar:
            return [one(s, bar) for s in seeds]

    return mean_std(ctx.per_process(protocol_seeds(run_seed, WHOLE_DATA_SALT, ev.runs), mine))
