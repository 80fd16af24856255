"""Re-evaluate finished rows of the Fashion-MNIST CPU comparison at fixed evaluation lrs instead of each stage's
learned lr, as rows "<row>, eval lr <lr>" of the same results table (is a stage set held back by its learned lr?).

    python benchmarks/eval_lr_sweep.py "PDD + MTT (5 x 2, 50 steps, ZCA, batch 20, 240 it)" 0.03 0.05
"""

from __future__ import annotations

import sys
import time

from accelerate import Accelerator
from fashion_mnist_cpu import ROWS, WORK, row_tag, write

import hf_condense


def main(name: str, lrs: list[float]) -> None:
    ipc = next(ipc for row, ipc, _ in ROWS if row == name)
    ps = hf_condense.load_progressive(WORK / row_tag(name, ipc))
    acc = Accelerator()
    rows = []
    for lr in lrs:
        t0 = time.perf_counter()
        per_stage = next(iter(hf_condense.evaluate_progressive(ps, accelerator=acc, lr=lr).values())).distilled
        rows.append(
            {
                "method": f"{name}, eval lr {lr:g}",
                "ipc": ipc,
                "acc": per_stage[-1][0],
                "std": per_stage[-1][1],
                "seconds": time.perf_counter() - t0,
                "lr": lr,
                "per_stage": [[s.ipc, m, sd] for s, (m, sd) in zip(ps.stages, per_stage)],
            }
        )
        write(rows)


if __name__ == "__main__":
    main(sys.argv[1], [float(v) for v in sys.argv[2:]])
