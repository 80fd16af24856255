"""Evaluation of staged sets under the standard protocol, split across processes, with the two references beside
every result: random real images of the same budget, and the whole train set."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

import torch
from accelerate.utils import gather_object

from .context import RunContext
from .methods import METHODS
from .methods.base import StageTask, SynSet
from .training import StageData, evaluate_runs, fit, make_optimizer, test_accuracy

Score = tuple[float, float]  # mean, std of test accuracy in [0, 1]


def _mean_std(values: Sequence[float]) -> Score:
    return (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0)


def _run_seeds(ctx: RunContext, salt: int, runs: int | None = None) -> list[int]:
    return [10_000 * (salt + 1) + 97 * ctx.recipe.seed + r for r in range(runs or ctx.recipe.evaluation.runs)]


def _per_process(ctx: RunContext, seeds: list[int], fn) -> list:
    """Run fn(this process's share of the seeds) -> one result per seed; every process gets all results, in seed
    order."""
    acc = ctx.accelerator
    with acc.split_between_processes(list(enumerate(seeds))) as mine:
        local = list(zip([i for i, _ in mine], fn([s for _, s in mine]))) if mine else []
    merged = gather_object(local) if acc.num_processes > 1 else local
    return [r for _, r in sorted(merged, key=lambda t: t[0])]


def stage_data(ctx: RunContext, synsets: Sequence[SynSet]) -> list[StageData]:
    ev = ctx.recipe.evaluation
    return [StageData(*s.training_set(), s.lr, s.meta.get("epochs", ev.epochs)) for s in synsets]


def evaluate_synsets(
    ctx: RunContext,
    synsets: Sequence[SynSet],
    mode: str | None = None,
    model: str | None = None,
    salt: int = 0,
    runs: int | None = None,
) -> list[Score]:
    """Mean and std test accuracy after each stage over `runs` (default `evaluation.runs`) fresh networks."""
    ev = ctx.recipe.evaluation
    data = stage_data(ctx, synsets)

    def mine(seeds: list[int]) -> list[list[float]]:
        return evaluate_runs(
            data,
            lambda: ctx.make_model(model),
            ctx.test_x,
            ctx.test_y,
            ev,
            ctx.dsa,
            mode or ev.mode,
            seeds,
            ctx.device,
            ctx.num_classes,
        )

    scores = _per_process(ctx, _run_seeds(ctx, salt, runs), mine)
    return [_mean_std([r[k] for r in scores]) for k in range(len(synsets))]


def random_real_stages(ctx: RunContext, ipcs: Sequence[int], epochs: Sequence[int]) -> list[SynSet]:
    """Random real images with the same per-stage budget (and evaluation lr), extending stage by stage."""
    spec = METHODS["random"]
    distiller = spec.distiller(ctx)
    stages: list[SynSet] = []
    for k, ipc in enumerate(ipcs, start=1):
        task = StageTask(
            stage=k,
            ipc=ipc,
            config=spec.config_class(),
            previous=stages,
            conditioning=True,
            transition=False,
            boost_beta=0.0,
            pool=ctx.class_indices,
            seed=ctx.recipe.seed + 7919 * k,
        )
        s = distiller.distill(task).stage
        s.meta["epochs"] = epochs[k - 1]
        stages.append(s)
    return stages


def whole_data_reference(ctx: RunContext) -> Score:
    """The recipe's network trained on the whole train split (protocol optimiser, `whole_data_epochs`)."""
    ev = ctx.recipe.evaluation

    def one(seed: int) -> float:
        torch.manual_seed(seed)
        model = ctx.make_model().to(ctx.device)
        g = torch.Generator().manual_seed(seed)
        fit(
            model,
            make_optimizer(model, ev, ev.lr),
            ctx.train_x,
            ctx.train_y,
            ev.whole_data_epochs,
            ev.lr,
            ev,
            ctx.dsa if ev.augment else None,
            g,
            ctx.device,
        )
        return test_accuracy(model, ctx.test_x, ctx.test_y, ctx.device, ev.test_batch_size)

    return _mean_std(_per_process(ctx, _run_seeds(ctx, salt=99), lambda seeds: [one(s) for s in seeds]))
