"""Fashion-MNIST at total IPC 10 on one GPU: the CPU profile's deciding comparison (single-stage MTT against PDD + MTT
2 x 5, with and without transitions, at equal distillation compute) with 10 experts instead of 4 and 5 evaluation
networks, sized to finish inside one 10-minute device call.

Same model, ZCA and evaluation as the CPU profile (benchmarks/fashion_mnist_cpu.py: ConvNet-D3W32, 300 epochs per
stage, DSA, final-epoch test accuracy). PDD runs PDD_ITERATIONS per stage (default 400, the CPU rows'), single-stage
MTT 1.5x that (600 x 100 images = 400 x (50 + 100) image-unrolls). Rows run as separate processes (the unrolls are
launch-bound, so several share one GPU well), each with its own expert cache; results go to
benchmarks/results/fashion_mnist_gpu_<PDD_ITERATIONS>it.{json,md}. `benchmarks/gpu_check.sh` runs all three.

    FASHION_MNIST_DIR=.data/fashion_mnist python benchmarks/fashion_mnist_gpu.py "MTT ZCA 30 steps (1.5x compute)" &
    EXTRA_OVERRIDES="method.iterations=5 evaluation.epochs=5" python benchmarks/fashion_mnist_gpu.py ...  # a quick try
"""

from __future__ import annotations

import os

from fashion_mnist_cpu import PDD_2X5_NO_TRANSITION, PDD_2X5_ROW, ROOT, ZCA_30, main, row_tag

WORK = ROOT / "outputs" / "bench_fashion_gpu"
PDD_ITERATIONS = int(os.environ.get("PDD_ITERATIONS", 400))
RESULTS = ROOT / "benchmarks" / "results" / f"fashion_mnist_gpu_{PDD_ITERATIONS}it"
EXPERTS = 10
# on a GPU micro-batching is 5x slower and stacked networks 1.5-2x faster (benchmarks/README.md, "On a GPU")
GPU = ["method.micro_batch=null", f"method.expert_stack={EXPERTS}", "evaluation.vectorize=true"]
ROWS = [
    (
        "MTT ZCA 30 steps (1.5x compute)",
        10,
        [*ZCA_30, *GPU, f"method.iterations={3 * PDD_ITERATIONS // 2}"],
    ),
    (
        PDD_2X5_ROW[0],
        10,
        [*PDD_2X5_ROW[2], *GPU, f"method.iterations={PDD_ITERATIONS}", f"method.transition_experts={EXPERTS}"],
    ),
    (PDD_2X5_NO_TRANSITION[0], 10, [*PDD_2X5_NO_TRANSITION[2], *GPU, f"method.iterations={PDD_ITERATIONS}"]),
]
EXTRA = os.environ.get("EXTRA_OVERRIDES", "").split()  # applied last; results then go to a scratch file
ROWS = [(name, ipc, [*o, f"output.cache_dir={WORK / row_tag(name, ipc)}_cache", *EXTRA]) for name, ipc, o in ROWS]

if __name__ == "__main__":
    main(
        ROWS,
        WORK,
        WORK / "quick_try" if EXTRA else RESULTS,
        ("preprocess.zca=true", f"method.num_experts={EXPERTS}", "evaluation.runs=5"),
    )
