"""Re-evaluate a finished row of the Fashion-MNIST CPU comparison another way, as rows of the same results table:
"<row>, eval lr <lr>" (every stage at one fixed lr instead of its learned lr: is a stage set held back by its lr?)
and "<row>, <mode> evaluation" (the stages replayed as a union or in sequence instead of progressively).

    python benchmarks/replay_eval.py "PDD + MTT (5 x 2, 50 steps, ZCA, batch 20, 240 it)" --lr 0.03 0.05
    python benchmarks/replay_eval.py "PDD w/o transition (2 x 5, 30 steps, ZCA)" --mode union
"""

from __future__ import annotations

import argparse

from accelerate import Accelerator
from fashion_mnist_cpu import ROWS, WORK, replay_row, row_tag, write

import hf_condense


def main(name: str, lrs: list[float], modes: list[str]) -> None:
    ipc = next(ipc for row, ipc, _ in ROWS if row == name)
    ps = hf_condense.load_progressive(WORK / row_tag(name, ipc))
    acc = Accelerator()
    rows = []
    for lr in lrs:
        rows.append(replay_row(f"{name}, eval lr {lr:g}", ipc, ps, acc, lr=lr))
        write(rows)
    for mode in modes:
        rows.append(replay_row(f"{name}, {mode} evaluation", ipc, ps, acc, overrides=[f"evaluation.mode={mode}"]))
        write(rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("row", help="a row name of fashion_mnist_cpu.ROWS whose folder is finished")
    parser.add_argument("--lr", nargs="+", type=float, default=[], help="fixed evaluation lrs, one row each")
    parser.add_argument("--mode", nargs="+", default=[], choices=["progressive", "union", "sequential"])
    args = parser.parse_args()
    main(args.row, args.lr, args.mode)
