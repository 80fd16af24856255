"""Evaluate a distilled repo or folder: `python -m hf_condense.evaluate <source> [options] [key.path=value ...]`.

Replays the stages (progressive, union or sequential) on fresh networks of any registered architecture (the
ConvNets or timm names such as resnet18) and prints the per-stage table beside the accuracies recorded at
distillation time. It reads only the repo's files: the recipe.yaml inside names the real test set.
"""

from __future__ import annotations

import argparse
import sys

from accelerate import Accelerator

from .config import EVAL_MODES, RecipeError, load_recipe
from .context import RunContext, make_accelerator
from .data import load_real_data
from .distill import RunResult
from .evaluation import Score, evaluate_synsets, random_real_stages
from .methods.base import SynSet
from .replay import ProgressiveSet, load_progressive


def evaluate_progressive(
    ps: ProgressiveSet,
    models: list[str] | None = None,
    overrides: list[str] = (),
    random_real: bool = False,
    epochs: int | list[int] | None = None,
    accelerator: Accelerator | None = None,
    lr: float | None = None,
) -> dict[str, RunResult]:
    """Per architecture, the stages' scores (and optionally random real images of the same budgets); `epochs` (one
    number, or one per stage) and `lr` replace the stages' own epochs and learned lr (to compare sets at one schedule,
    or to ask how long a later stage should train)."""
    recipe = load_recipe(ps.recipe, list(overrides))
    accelerator = accelerator or make_accelerator()
    ctx = RunContext.build(recipe, accelerator, load_real_data(recipe.dataset), preprocessor=ps.preprocessor)
    synsets = _scheduled(ps.synsets(), epochs, lr)
    out = {}
    for name in models or [recipe.model.name]:
        result = RunResult(ps.folder, synsets)
        result.distilled = evaluate_synsets(ctx, synsets, model=name)
        if random_real:
            rand = random_real_stages(ctx, [s.meta["ipc"] for s in synsets], [s.meta["epochs"] for s in synsets])
            rand = _scheduled(rand, None, lr)
            result.random_real = evaluate_synsets(ctx, rand, model=name, salt=1)
        out[name] = result
    return out


def _scheduled(synsets: list[SynSet], epochs: int | list[int] | None, lr: float | None) -> list[SynSet]:
    """The stages with their epochs (one number for all, or one per stage) and initial lr replaced where given."""
    per_stage = epochs if isinstance(epochs, list) else [epochs]
    if len(per_stage) == 1:
        per_stage = per_stage * len(synsets)
    if len(per_stage) != len(synsets):
        raise ValueError(f"epochs: got {len(epochs)} values for {len(synsets)} stages; give one, or one per stage")
    for s, e in zip(synsets, per_stage):
        if e is not None:
            s.meta["epochs"] = e
        if lr is not None:
            s.lr = lr
    return synsets


def _recorded(ps: ProgressiveSet) -> list[Score]:
    return [tuple(s) for s in (ps.results or {}).get("distilled", [])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hf_condense.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("source", help="Hub dataset id or local folder made by hf_condense")
    parser.add_argument("overrides", nargs="*", help="key.path=value overrides of the stored recipe")
    parser.add_argument("--revision", help="Hub revision (branch, tag or commit)")
    parser.add_argument("--models", nargs="+", help="architectures to train (default: the recipe's)")
    parser.add_argument("--runs", type=int, help="networks per architecture")
    parser.add_argument("--mode", choices=EVAL_MODES, help="how stages are replayed")
    parser.add_argument(
        "--epochs", type=int, nargs="+", help="epochs of every stage, or one per stage (default: each stage's own)"
    )
    parser.add_argument("--lr", type=float, help="initial lr of every stage (default: each stage's learned lr)")
    parser.add_argument("--dataset", help="real data to test on (default: the recipe's dataset.path)")
    parser.add_argument("--random-real", action="store_true", help="also train on random real images")
    args = parser.parse_args(argv)
    overrides = list(args.overrides)
    for key, value in (
        ("evaluation.runs", args.runs),
        ("evaluation.mode", args.mode),
        ("dataset.path", args.dataset),
    ):
        if value is not None:
            overrides.append(f"{key}={value}")
    try:
        ps = load_progressive(args.source, args.revision)
        results = evaluate_progressive(ps, args.models, overrides, args.random_real, args.epochs, lr=args.lr)
    except (RecipeError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    recorded = _recorded(ps)
    for name, result in results.items():
        print(f"\n{ps.source}: {name}")
        print(result.table())
        if recorded:
            print("recorded at distillation: " + ", ".join(f"{100 * m:.2f} ± {100 * s:.2f}" for m, s in recorded))
    return 0


if __name__ == "__main__":
    sys.exit(main())
