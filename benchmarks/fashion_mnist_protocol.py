"""Re-evaluate saved CPU-profile rows (benchmarks/fashion_mnist_cpu.py) under the full published protocol.

The CPU profile trains 3 evaluation networks for 300 epochs; the DC/DSA/DM/MTT protocol (REFERENCE.md) trains 5 for
1000 epochs (lr x 0.1 at 500). This script loads each named row's stored stages from outputs/bench_fashion_cpu and
evaluates them that way, so distilled sets and baselines are compared under the protocol the papers report.

    nohup python benchmarks/fashion_mnist_protocol.py "random real" MTT > /tmp/protocol.log 2>&1 &
"""

from __future__ import annotations

import sys

from accelerate import Accelerator
from fashion_mnist_cpu import ROOT, ROWS, WORK, replay_row, row_tag, write

import hf_condense

RESULTS = ROOT / "benchmarks" / "results" / "fashion_mnist_protocol"
RUNS, EPOCHS = 5, 1000


def main() -> None:
    wanted = sys.argv[1:]  # row names; every saved row when empty
    acc = Accelerator()
    rows: list[dict] = []
    for name, ipc, _ in ROWS:
        folder = WORK / row_tag(name, ipc)
        if (wanted and name not in wanted) or not folder.is_dir():
            continue
        ps = hf_condense.load_progressive(folder)
        rows.append(replay_row(name, ipc, ps, acc, overrides=[f"evaluation.runs={RUNS}"], epochs=EPOCHS))
        write(rows, RESULTS)


if __name__ == "__main__":
    main()
