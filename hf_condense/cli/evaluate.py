"""`hf-condense evaluate <source> [options] [key.path=value ...]` (also `python -m hf_condense.evaluate ...`).

Replays a distilled repo or folder on fresh networks and prints the per-stage table beside the accuracies recorded
at distillation time. It reads only the repo's files: the recipe.yaml inside names the real test set.
"""

from __future__ import annotations

import argparse

import torch

from ..evaluation import Score
from ..hub.evaluate import evaluate_progressive
from ..hub.replay import ProgressiveSet, load_progressive
from ..stages.recipe import EVAL_MODES, model_name_errors
from . import COMMANDS
from .errors import InputError, guarded


def _recorded(ps: ProgressiveSet) -> list[Score]:
    return [tuple(s) for s in (ps.results or {}).get("distilled", [])]


def reproduction(recorded: list[Score], now: list[Score], threads: int | None) -> str:
    """One line: whether this evaluation reproduced the recorded table, and the likely reason when it did not."""
    mine = torch.get_num_threads()
    if [m for m, _ in recorded] == [m for m, _ in now]:
        return f"identical to the recorded table ({mine} CPU thread(s) per process)"
    if threads is not None and threads != mine:
        return (
            f"differs from the recorded table: it was evaluated with {threads} CPU thread(s) per process, this with "
            f"{mine} (float round-off); rerun with compute.threads={threads} to reproduce it exactly"
        )
    return "differs from the recorded table (other evaluation settings, processes or device)"


def build_parser(prog: str = "hf-condense evaluate") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=COMMANDS["evaluate"])
    parser.add_argument("source", help="Hub dataset id or local folder made by hf_condense")
    parser.add_argument("overrides", nargs="*", default=[], help="key.path=value overrides of the stored recipe")
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
    return parser


def main(argv: list[str] | None = None, prog: str = "hf-condense evaluate") -> int:
    args = build_parser(prog).parse_args(argv)
    overrides = list(args.overrides)
    for key, value in (
        ("evaluation.runs", args.runs),
        ("evaluation.mode", args.mode),
        ("dataset.path", args.dataset),
    ):
        if value is not None:
            overrides.append(f"{key}={value}")

    def body() -> None:
        errors = model_name_errors("--models", args.models or [])
        if args.lr is not None and not args.lr >= 0:
            errors.append(f"--lr: {args.lr} must be a learning rate >= 0")
        errors += [f"--epochs: {e} must be >= 0" for e in args.epochs or [] if e < 0]
        if errors:  # refused before the repo is read or any network trained
            raise InputError("; ".join(errors))
        try:
            ps = load_progressive(args.source, args.revision)
            results = evaluate_progressive(ps, args.models, overrides, args.random_real, args.epochs, lr=args.lr)
        except (FileNotFoundError, ValueError) as e:
            raise InputError(str(e)) from None
        recorded = _recorded(ps)
        for name, result in results.items():
            print(f"\n{ps.source}: {name}")
            print(result.table())
            if recorded and name == ps.recipe.get("model", {}).get("name"):
                print("recorded at distillation: " + ", ".join(f"{100 * m:.2f} ± {100 * s:.2f}" for m, s in recorded))
                print(reproduction(recorded, result.distilled, (ps.results or {}).get("threads")))

    return guarded(body)
