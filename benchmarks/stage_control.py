"""Control for a finished multi-stage row of the Fashion-MNIST CPU comparison: the same progressive schedule (each
stage's epochs and lr, or one fixed lr) with every later stage's own images replaced by stage 1's. It separates what
a later stage's images add from what its extra epochs on the union do, as rows "<row>, stage 1 repeated" (and
", eval lr <lr>") of the same results table.

    python benchmarks/stage_control.py "PDD + MTT (2 x 5, 30 steps, ZCA)" 0.0423
"""

from __future__ import annotations

import sys

from accelerate import Accelerator
from fashion_mnist_cpu import ROWS, WORK, replay_row, row_tag, write

import hf_condense
from hf_condense.replay import Stage


def main(name: str, lrs: list[float]) -> None:
    ipc = next(ipc for row, ipc, _ in ROWS if row == name)
    ps = hf_condense.load_progressive(WORK / row_tag(name, ipc))
    first = ps.stages[0]
    ps.stages = [first] + [Stage(s.number, first.dataset, s.meta) for s in ps.stages[1:]]
    acc = Accelerator()
    rows = [replay_row(f"{name}, stage 1 repeated", ipc, ps, acc)]
    write(rows)
    for lr in lrs:
        rows.append(replay_row(f"{name}, stage 1 repeated, eval lr {lr:g}", ipc, ps, acc, lr=lr))
        write(rows)


if __name__ == "__main__":
    main(sys.argv[1], [float(v) for v in sys.argv[2:]])
