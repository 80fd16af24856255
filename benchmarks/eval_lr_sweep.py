"""Re-evaluate finished rows of the Fashion-MNIST CPU comparison at fixed evaluation lrs instead of each stage's
learned lr, as rows "<row>, eval lr <lr>" of the same results table (is a stage set held back by its learned lr?).

    python benchmarks/eval_lr_sweep.py "PDD + MTT (5 x 2, 50 steps, ZCA, batch 20, 240 it)" 0.03 0.05
"""

from __future__ import annotations

import sys

from accelerate import Accelerator
from fashion_mnist_cpu import ROWS, WORK, replay_row, row_tag, write

import hf_condense


def main(name: str, lrs: list[float]) -> None:
    ipc = next(ipc for row, ipc, _ in ROWS if row == name)
    ps = hf_condense.load_progressive(WORK / row_tag(name, ipc))
    acc = Accelerator()
    rows = []
    for lr in lrs:
        rows.append(replay_row(f"{name}, eval lr {lr:g}", ipc, ps, acc, lr=lr))
        write(rows)


if __name__ == "__main__":
    main(sys.argv[1], [float(v) for v in sys.argv[2:]])
