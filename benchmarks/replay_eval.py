"""Re-evaluate a finished row of the Fashion-MNIST CPU comparison another way, as rows of the same results table:

- "<row>, eval epochs 300/30": each stage trained for the given epochs (one per stage) instead of its own;
- "<row>, stage 1 repeated": every later stage's images replaced by stage 1's, same schedule, which separates what a
  later stage's images add from what its extra epochs on the union do (`--control`);
- "..., eval lr <lr>": every stage at one fixed lr instead of its learned lr (is a set held back by its lr?);
- "..., <mode> evaluation": the stages replayed as a union or in sequence instead of progressively;
- "<row>, 10 networks": more evaluation networks than the protocol's 3 (`--runs`), to tell rows apart that differ by
  less than their std over 3 networks;
- "<row>" itself (`--finish`): the row's own evaluation, for a row whose stages were saved but whose run stopped
  before its evaluation ended; its wall time is the stages' distillation time plus this evaluation.

    python benchmarks/replay_eval.py "PDD + MTT (5 x 2, 50 steps, ZCA, batch 20, 240 it)" --lr 0.03 0.05
    python benchmarks/replay_eval.py "PDD w/o transition (2 x 5, 30 steps, ZCA)" --mode union
    python benchmarks/replay_eval.py "PDD + MTT (2 x 5, 30 steps, ZCA)" --control --lr 0.04227
    python benchmarks/replay_eval.py "PDD + MTT (2 x 5, 30 steps, ZCA)" --epochs 300 30
    python benchmarks/replay_eval.py "MTT ZCA 30 steps, 600 it (1.5x compute)" --runs 10
    python benchmarks/replay_eval.py "MTT ZCA 30 steps, 600 it (1.5x compute), seed 1" --finish
    python benchmarks/replay_eval.py "MTT ZCA 30 steps@8" --runs 10    # "name@IPC": one of the rows of that name
"""

from __future__ import annotations

import argparse

from accelerate import Accelerator
from fashion_mnist_cpu import ROWS, WORK, replay_row, row_names, row_tag, stage_seconds, write

import hf_condense
from hf_condense.hub.replay import Stage
from hf_condense.stages.recipe import EVAL_MODES, EvalConfig


def main(
    spec: str,
    lrs: list[float],
    modes: list[str],
    epochs: list[int] | None,
    control: bool,
    runs: int | None,
    finish: bool,
) -> None:
    name, ipc = next(row[:2] for row in ROWS if spec in row_names(row))
    ps = hf_condense.load_progressive(WORK / row_tag(name, ipc))
    if control:
        first = ps.stages[0]
        ps.stages = [first] + [Stage(s.number, first.dataset, s.meta) for s in ps.stages[1:]]
    base = name + (", stage 1 repeated" if control else "")
    base += f", eval epochs {'/'.join(map(str, epochs))}" if epochs else ""
    base += f", {runs} networks" if runs else ""
    nets = [f"evaluation.runs={runs}"] if runs else []
    acc = Accelerator()
    rows = []
    replays = [(base, [], {})] if base != name or finish else []
    replays += [(f"{base}, eval lr {lr:g}", [], {"lr": lr}) for lr in lrs]
    replays += [(f"{base}, {mode} evaluation", [f"evaluation.mode={mode}"], {}) for mode in modes]
    for method, overrides, replay in replays:
        rows.append(replay_row(method, ipc, ps, acc, epochs=epochs, overrides=overrides + nets, **replay))
        if finish:  # the row as its own run would have written it
            distill = stage_seconds(ps.stages)
            rows[-1].update(seconds=rows[-1]["seconds"] + distill, stage_seconds=distill)
        write(rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    names = sorted({n for row in ROWS for n in row_names(row)})
    parser.add_argument("row", choices=names, metavar="row", help='a finished row: "name" or "name@IPC"')
    parser.add_argument("--lr", nargs="+", type=float, default=[], help="fixed evaluation lrs, one row each")
    own = EvalConfig().mode  # every row's own mode: the row itself, or its other replays, give it
    others = [m for m in EVAL_MODES if m != own]
    parser.add_argument("--mode", nargs="+", default=[], choices=others, help="other evaluation modes, one row each")
    parser.add_argument("--epochs", nargs="+", type=int, help="epochs of each stage, one value per stage")
    parser.add_argument("--control", action="store_true", help="replace every later stage's images by stage 1's")
    parser.add_argument("--runs", type=int, help="evaluation networks per row (default: the row's own, 3)")
    parser.add_argument("--finish", action="store_true", help="write the row's own evaluation (its run stopped)")
    args = parser.parse_args()
    replayed = args.lr or args.mode or args.epochs or args.control or args.runs
    if not (replayed or args.finish):
        parser.error("nothing to replay: give --lr, --mode, --epochs, --control, --runs or --finish")
    if replayed and args.finish:
        parser.error("--finish writes the row's own evaluation: give it without the other options")
    main(args.row, args.lr, args.mode, args.epochs, args.control, args.runs, args.finish)
