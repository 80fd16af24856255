"""Re-evaluate a finished benchmark row's saved stages another way (nothing is distilled again), as a row of
`benchmarks/results/replays.{json,md}`:

- `--epochs 300 30`: each stage trained for the given epochs (one per stage) instead of its own;
- `--control`: every later stage's images replaced by stage 1's ("stage 1 repeated"), same schedule: what a later
  stage's images add beyond the extra epochs on the union;
- `--lr 0.03`: every stage at one fixed lr instead of its learned lr;
- `--mode union`: the stages replayed as a union or in sequence instead of the row's own mode;
- `--runs 5 --epochs 1000`: the full published protocol (5 networks x 1000 epochs) instead of the CPU profile's.

    python benchmarks/replay_eval.py fashion_mnist_findings "PDD + MTT (2 x 5, 30 steps, ZCA)" --control
    python benchmarks/replay_eval.py fashion_mnist_cpu "MTT ZCA 30 steps" --runs 5 --epochs 1000
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from accelerate import Accelerator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import RESULTS, cumulative, finished_folder  # noqa: E402

import hf_condense  # noqa: E402
from hf_condense.cli.errors import guarded  # noqa: E402
from hf_condense.core.io import write_json, write_text  # noqa: E402
from hf_condense.hub.replay import Stage  # noqa: E402
from hf_condense.stages.recipe import EVAL_MODES  # noqa: E402

OUT = RESULTS / "replays"


def replay_name(args: argparse.Namespace) -> str:
    parts = ["stage 1 repeated"] if args.control else []
    parts += [f"eval epochs {'/'.join(map(str, args.epochs))}"] if args.epochs else []
    parts += [f"{args.runs} networks"] if args.runs else []
    parts += [f"eval lr {args.lr:g}"] if args.lr else []
    parts += [f"{args.mode} evaluation"] if args.mode else []
    return ", ".join(parts)


def replay(args: argparse.Namespace) -> None:
    ps = hf_condense.load_progressive(finished_folder(args.table, args.row, args.seed))
    if args.control:
        first = ps.stages[0]
        ps.stages = [first] + [Stage(s.number, first.dataset, s.meta) for s in ps.stages[1:]]
    overrides = [f"evaluation.runs={args.runs}"] * bool(args.runs) + [f"evaluation.mode={args.mode}"] * bool(args.mode)
    t0 = time.perf_counter()
    scores = hf_condense.evaluate_progressive(
        ps, overrides=overrides, epochs=args.epochs, accelerator=Accelerator(), lr=args.lr
    )
    stages = cumulative([s.ipc for s in ps.stages], next(iter(scores.values())).distilled)
    row = {"table": args.table, "row": args.row, "seed": args.seed, "replay": replay_name(args), "per_stage": stages}
    row.update(acc=stages[-1][1], std=stages[-1][2], seconds=round(time.perf_counter() - t0, 1))
    save(row)


def save(row: dict) -> None:
    """Replace the replay of the same row, seed and kind in the results, then rewrite the table."""
    path = OUT.with_suffix(".json")
    rows = json.loads(path.read_text()) if path.is_file() else []
    key = ("table", "row", "seed", "replay")
    rows = [r for r in rows if any(r[k] != row[k] for k in key)] + [row]
    write_json(path, rows)
    lines = [
        "# Replays: finished rows' stages re-evaluated another way",
        "",
        "Written by `benchmarks/replay_eval.py` (rows of `benchmarks/tables/`; accuracy mean ± std over networks).",
        "",
        "| table | row | seed | replay | per stage (cumulative IPC: accuracy) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        cells = " · ".join(f"{c}: {m:.2f} ± {sd:.2f}" for c, m, sd in r["per_stage"])
        lines.append(f"| {r['table']} | {r['row']} | {r['seed']} | {r['replay']} | {cells} |")
    write_text(OUT.with_suffix(".md"), "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/replay_eval.py", description=__doc__.splitlines()[0])
    p.add_argument("table", help="a table under benchmarks/tables/")
    p.add_argument("row", help="a finished row of it")
    p.add_argument("--seed", type=int, default=0, help="which of the row's seeds (default 0)")
    p.add_argument("--epochs", nargs="+", type=int, help="epochs of each stage, one value per stage")
    p.add_argument("--control", action="store_true", help="replace every later stage's images by stage 1's")
    p.add_argument("--lr", type=float, help="one fixed evaluation lr for every stage")
    p.add_argument("--mode", choices=EVAL_MODES, help="another evaluation mode")
    p.add_argument("--runs", type=int, help="evaluation networks (default: the row's own)")
    args = p.parse_args(argv)
    if not (args.epochs or args.control or args.lr or args.mode or args.runs):
        p.error("nothing to replay: give --epochs, --control, --lr, --mode or --runs")
    return guarded(lambda: replay(args))


if __name__ == "__main__":
    sys.exit(main())
