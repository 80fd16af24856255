"""Fashion-MNIST "CPU profile" comparison at IPC 10 (and IPC 1): whole data, random real, herding, k-center, MTT.

Profile: ConvNet-D3W32 (instance norm), 28 px padded to 32 in the first conv, no ZCA; evaluation: 3 networks with
different initialisations, 300 epochs (lr x 0.1 at 150), SGD 0.9 / 5e-4, batch 256, DSA; final-epoch test accuracy.
Experts: 4 x 6 epochs. MTT: 400 iterations, syn_steps 10, expert_epochs 2, max_start_epoch 4, lr_img 1000.
Every run uses a fresh cache, so expert training is inside MTT's wall time.

    nohup python benchmarks/fashion_mnist_cpu.py > benchmarks/results/fashion_mnist_cpu.log 2>&1 &
    python benchmarks/fashion_mnist_cpu.py "MTT ZCA" "random real@14"   # chosen rows only, merged into the results
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import sys
import time
from itertools import accumulate
from pathlib import Path

from accelerate import Accelerator

import hf_condense
from hf_condense.core.io import write_json
from hf_condense.hub.figures import save_accuracy_curve
from hf_condense.stages.run_folder import CHECKPOINTS, RunFolder, list_stages, stage_name

ROOT = Path(__file__).resolve().parents[1]
# a copy elsewhere (e.g. on a device machine, where ../shared does not travel) is named by FASHION_MNIST_DIR
DATA = Path(os.environ.get("FASHION_MNIST_DIR", ROOT.parent / "shared" / "datasets" / "fashion_mnist"))
WORK = ROOT / "outputs" / "bench_fashion_cpu"
RESULTS = ROOT / "benchmarks" / "results" / "fashion_mnist_cpu"
RECIPE = ROOT / "recipes" / "fashion_mnist_mtt_cpu.yaml"

# PDD with the published settings for CIFAR-10 IPC-2 stages: 50 student steps, lr_lr 1e-7. Each student step trains on
# the union S1..Si, so 80 iterations per stage cost 80 x 50 x (20 + 40 + ... + 100) = 1.2M image-steps, the 30-step
# MTT's 400 x 100 x 30
PDD_50_STEPS = ["stages.count=5", "stages.ipc=2", "method.iterations=80", "method.syn_steps=50", "method.lr_lr=1e-7"]


def later_stages_m4(count: int = 5) -> str:
    """Stages 2..count match 4 expert epochs starting at most at epoch 2 (the same 6-epoch trajectories)."""
    return "stages.overrides=[{}" + ", {expert_epochs: 4, max_start_epoch: 2}" * (count - 1) + "]"


PDD_M4 = [*PDD_50_STEPS, "method.transition_experts=2", "preprocess.zca=true"]


def pdd_m4(count: int) -> tuple[str, int, list[str]]:
    """The PDD + MTT row of `count` IPC-2 stages whose later stages match 4 expert epochs (PDD's scaling up)."""
    name = f"PDD + MTT ({count} x 2, 50 steps, ZCA, later stages M 4)"
    return name, 2 * count, [*PDD_M4, f"stages.count={count}", later_stages_m4(count)]


# the published IPC-10 MTT settings (ZCA, 30 student steps), in chunks of 50 images per student step
ZCA_30 = ["preprocess.zca=true", "method.syn_steps=30", "method.micro_batch=50"]


def mtt_zca_30(ipc: int) -> tuple[str, int, list[str]]:
    """Single-stage ZCA MTT with the published IPC-10 unroll (30 steps) at `ipc`, given the image-steps of the first
    ipc / 2 stages of a PDD_50_STEPS row: 80 x 50 x 10 x (2 + 4 + ... + ipc) = iterations x 30 x 10 ipc, so
    iterations = 400 (ipc + 2) / 12 (the recipe's 400 at IPC 10)."""
    return "MTT ZCA 30 steps", ipc, [*ZCA_30, f"method.iterations={round(400 * (ipc + 2) / 12)}"]


def pdd_30(count: int, transition: bool = True) -> tuple[str, int, list[str]]:
    """PDD + MTT in `count` IPC-2 stages, each distilled as the single-stage "MTT ZCA 30 steps" row at IPC 2 (30 steps,
    lr_lr 1e-5, 133 iterations: stage i costs 133 x 30 x 20 i, the PDD_50_STEPS stage's 80 x 50 x 20 i); with 2
    transition experts, or without transitions (every stage matches the base experts)."""
    name = f"{'PDD + MTT' if transition else 'PDD w/o transition'} ({count} x 2, 30 steps, ZCA)"
    scheme = "method.transition_experts=2" if transition else "stages.transition=false"
    return name, 2 * count, [*mtt_zca_30(2)[2], f"stages.count={count}", "stages.ipc=2", scheme]


# two stages of IPC 5, each distilled as the 30-step ZCA single-stage MTT: 267 x 30 x (50 + 100) = 1.2M image-steps
PDD_2X5 = ["stages.count=2", "stages.ipc=5", "method.iterations=267", *ZCA_30]
# PDD_2X5 with 4 transition experts: the PDD + MTT row that the target compares with mtt_zca_30(10)
PDD_2X5_ROW = ("PDD + MTT (2 x 5, 30 steps, ZCA)", 10, [*PDD_2X5, "method.transition_experts=4"])
# the same without transitions: the multi-stage row closest to single-stage MTT (as a union)
PDD_2X5_NO_TRANSITION = ("PDD w/o transition (2 x 5, 30 steps, ZCA)", 10, [*PDD_2X5, "stages.transition=false"])
# (row name, IPC, overrides on top of the MTT CPU recipe)
ROWS = [
    ("random real", 10, ["method={name: random}", "evaluation.whole_data=true", "evaluation.whole_data_epochs=3"]),
    ("herding", 10, ["method={name: herding, embed_epochs: 1}"]),
    ("k-center", 10, ["method={name: kcenter, embed_epochs: 1}"]),
    ("MTT", 10, []),
    # MTT at IPC 10 with the published IPC-10 unroll length (syn_steps 30; 3x the image-steps of the MTT row)
    ("MTT 30 steps", 10, ["method.syn_steps=30", "method.micro_batch=50"]),
    ("random real", 1, ["method={name: random}"]),
    ("random real", 14, ["method={name: random}"]),  # reference for the 7-stage PDD row
    # the random reference at IPC 2 (the first PDD stage), with the whole train set trained for the protocol's 30
    # epochs beside it (the first row's 3 epochs keep the comparison within its time budget)
    ("random real", 2, ["method={name: random}", "evaluation.whole_data=true", "evaluation.whole_data_epochs=30"]),
    ("MTT", 1, []),
    # MTT at IPC 1 with the published IPC-1 unroll (syn_steps 50, max_start_epoch 2, lr_lr 1e-7)
    ("MTT 50 steps", 1, ["method.syn_steps=50", "method.max_start_epoch=2", "method.lr_lr=1e-7"]),
    ("MTT 1200 it", 10, ["method.iterations=1200"]),
    # sweep of the settings the reference says to tune (rows rerun alone reuse the cached experts)
    ("MTT lr_img 1e4", 10, ["method.lr_img=10000"]),
    ("MTT N20 M1", 10, ["method.syn_steps=20", "method.expert_epochs=1", "method.max_start_epoch=5"]),
    ("MTT ZCA", 10, ["preprocess.zca=true"]),
    # the strongest single-stage MTT, also at the smaller IPCs of the PDD 5 x 2 rows' cumulative stages
    *(mtt_zca_30(ipc) for ipc in (10, 2, 4, 6, 8)),
    ("MTT herding init", 10, ["method.init=herding"]),
    # the other base methods at CPU-profile budgets (DC/DSA: 20 networks x 10 rounds, 10 inner epochs)
    ("DM", 10, ["method={name: dm, iterations: 500}"]),
    ("DC", 10, ["method={name: dc, iterations: 20, inner_loop: 10}"]),
    ("DSA", 10, ["method={name: dsa, iterations: 20, inner_loop: 10}"]),
    # IDC: 25 networks x 20 matching rounds (IDC's default is 500 x 100); factor 2, so 40 decoded images per class
    ("IDC", 10, ["method={name: idc, iterations: 25, inner_loop: 20}"]),
    (
        "PDD + IDC (5 x 2)",
        10,
        [
            "method={name: idc, iterations: 5, inner_loop: 20, transition_nets: 4, transition_epochs: 150}",
            "stages.count=5",
            "stages.ipc=2",
        ],
    ),
    ("forgetting", 10, ["method={name: forgetting, score_epochs: 3}"]),
    ("PDD + DM (5 x 2)", 10, ["method={name: dm, iterations: 100}", "stages.count=5", "stages.ipc=2"]),
    # multi-stage schemes over MTT at equal total IPC 10 and equal distillation iterations (5 x 80 = 400); later
    # stages retrain 2 of the 4 experts from their transition points (CPU budget)
    (
        "PDD + MTT (5 x 2)",
        10,
        ["stages.count=5", "stages.ipc=2", "method.iterations=80", "method.transition_experts=2"],
    ),
    ("PDD w/o transition", 10, ["stages.count=5", "stages.ipc=2", "method.iterations=80", "stages.transition=false"]),
    (
        "Boost-DD + MTT (5 x 2, beta 0.1)",
        10,
        ["stages.count=5", "stages.ipc=2", "method.iterations=80", "stages.scheme=boost", "stages.boost_beta=0.1"],
    ),
    (
        "SeqMatch + MTT (2 x 5)",
        10,
        [
            "stages.count=2",
            "stages.ipc=5",
            "method.iterations=200",
            "method.transition_experts=2",
            "stages.scheme=seqmatch",
            "stages.overrides=[{max_start_epoch: 4, syn_steps: 10, expert_epochs: 2},"
            " {max_start_epoch: 2, syn_steps: 20, expert_epochs: 3}]",
        ],
    ),
    (
        "PDD w/o conditioning",
        10,
        [
            "stages.count=5",
            "stages.ipc=2",
            "method.iterations=80",
            "method.transition_experts=2",
            "stages.conditioning=false",
        ],
    ),
    # PDD at the published IPC-2-stage settings (PDD_50_STEPS), with transitions, with ZCA too (the published PDD + MTT
    # settings), and without transitions (transitions cost most of the PDD wall time)
    ("PDD + MTT (5 x 2, 50 steps)", 10, [*PDD_50_STEPS, "method.transition_experts=2"]),
    ("PDD + MTT (5 x 2, 50 steps, ZCA)", 10, [*PDD_50_STEPS, "method.transition_experts=2", "preprocess.zca=true"]),
    # more distillation per stage at the same 1.2M image-steps: 20-image student batches drawn from the union, 3x the
    # iterations; and each stage run as the 30-step single-stage MTT (400 iterations, 30 steps) on 20-image batches
    (
        "PDD + MTT (5 x 2, 30 steps, ZCA, batch 20, 400 it)",
        10,
        [
            *PDD_50_STEPS,
            "method.transition_experts=2",
            "preprocess.zca=true",
            "method.iterations=400",
            "method.syn_steps=30",
            "method.batch_syn=20",
        ],
    ),
    (
        "PDD + MTT (5 x 2, 50 steps, ZCA, batch 20, 240 it)",
        10,
        [
            *PDD_50_STEPS,
            "method.transition_experts=2",
            "preprocess.zca=true",
            "method.iterations=240",
            "method.batch_syn=20",
        ],
    ),
    # the published IPC-2 lr_lr (1e-7) keeps every stage's learned lr at ~0.01, and the stages evaluate better at a
    # higher lr (rows ", eval lr ..." of benchmarks/replay_eval.py --lr); the single-stage MTT's lr_lr 1e-5 learns one
    (
        "PDD + MTT (5 x 2, 50 steps, ZCA, lr_lr 1e-5)",
        10,
        [*PDD_50_STEPS, "method.transition_experts=2", "preprocess.zca=true", "method.lr_lr=1e-5"],
    ),
    # later stages match 4 expert epochs instead of 2 (their transition trajectories move 2-4x less per epoch than
    # the base experts'), from start epochs 0..2 (the same 6-epoch trajectories); and, as a control, the same without
    # transitions (later stages match the base experts over 4 epochs)
    pdd_m4(5),
    # PDD's scaling up: the same run carried on to 7 and 8 stages (IPC 14, 16), each from a copy of the shorter row
    pdd_m4(7),
    pdd_m4(8),
    # PDD whose stages are the strongest single-stage MTT at IPC 2 (the 30-step ZCA row), 2 stages (IPC 4)
    pdd_30(2),
    pdd_30(5, transition=False),
    # PDD_2X5 (the published IPC-50 stage settings: 30 steps, lr_lr 1e-5), with 4 transition experts and without
    PDD_2X5_ROW,
    PDD_2X5_NO_TRANSITION,
    # stage 2's students start only at the transition point (epoch 0 of its experts, where progressive evaluation
    # starts stage 2), not at epochs 0-4; the 4 extra expert epochs keep the same cached trajectories
    (
        "PDD + MTT (2 x 5, 30 steps, ZCA, stage 2 from the transition point)",
        10,
        [*PDD_2X5_ROW[2], "stages.overrides=[{}, {max_start_epoch: 0, expert_extra_epochs: 4}]"],
    ),
    (
        "PDD w/o transition (50 steps, ZCA, later stages M 4)",
        10,
        [*PDD_50_STEPS, "preprocess.zca=true", "stages.transition=false", later_stages_m4()],
    ),
    ("PDD w/o transition (50 steps)", 10, [*PDD_50_STEPS, "stages.transition=false"]),
    ("PDD w/o transition (50 steps, ZCA)", 10, [*PDD_50_STEPS, "stages.transition=false", "preprocess.zca=true"]),
    (
        "RaT-BPTT",
        10,
        ["method={name: ratbptt, iterations: 100, window: 10, horizon: 40, lr_img: 0.01, batch_real: 1000}"],
    ),
]


def reseeded(row: tuple[str, int, list[str]], seed: int) -> tuple[str, int, list[str]]:
    """The row run again from `seed` (its experts, initial images, student batches and evaluation networks all
    change): the spread between distillations, which a row's std over evaluation networks alone does not show."""
    name, ipc, overrides = row
    return f"{name}, seed {seed}", ipc, [*overrides, f"seed={seed}"]


# the single-stage MTT and the PDD + MTT rows that the target compares, and the closest multi-stage row (PDD
# w/o transition), rerun from other seeds
ROWS += [reseeded(r, seed) for seed in (1, 2) for r in (mtt_zca_30(10), PDD_2X5_ROW)]
ROWS += [reseeded(PDD_2X5_NO_TRANSITION, seed) for seed in (1, 2)]
# the paper runs every PDD stage for the base method's full iteration count (equal IPC, 1.5x the compute here):
# PDD_2X5_ROW and PDD_2X5_NO_TRANSITION at the single-stage row's 400 iterations per stage, not the equal-compute 267
PDD_400, PDD_400_NO_TRANSITION = (
    (row[0].replace("ZCA)", "ZCA, 400 it per stage)"), 10, [*row[2], "method.iterations=400"])
    for row in (PDD_2X5_ROW, PDD_2X5_NO_TRANSITION)
)
# single-stage MTT given the same 1.5x compute (600 x 30 x 100 = 400 x 30 x (50 + 100) image-steps), and both
# from seeds 1 and 2 with the closest 400-iteration multi-stage row
MTT_600 = ("MTT ZCA 30 steps, 600 it (1.5x compute)", 10, [*ZCA_30, "method.iterations=600"])
ROWS += [PDD_400, PDD_400_NO_TRANSITION, reseeded(PDD_400_NO_TRANSITION, 1)]
ROWS += [MTT_600, reseeded(MTT_600, 1), reseeded(PDD_400_NO_TRANSITION, 2), reseeded(MTT_600, 2)]
ROWS += [reseeded(row, 3) for row in (PDD_400_NO_TRANSITION, MTT_600)]
ROWS += [reseeded(PDD_400, seed) for seed in (1, 2, 3)]


def three_stages(row: tuple[str, int, list[str]]) -> tuple[str, int, list[str]]:
    """A 2 x 5 row carried on to a third IPC-5 stage (IPC 15): PDD's scaling up at the paper's per-stage compute."""
    name, ipc, overrides = row
    return name.replace("(2 x 5", "(3 x 5"), ipc + 5, [*overrides, "stages.count=3"]


PDD_400_X3, PDD_400_NO_TRANSITION_X3 = three_stages(PDD_400), three_stages(PDD_400_NO_TRANSITION)
# single-stage MTT at the 3 x 5 rows' IPC 15 and iterations per run (the paper's comparison: each PDD stage runs the
# base method's iteration count; named apart from mtt_zca_30's compute-matched rows); equal compute would be 800
# iterations, past a CPU session
ROWS += [PDD_400_X3, PDD_400_NO_TRANSITION_X3, ("MTT ZCA 30 steps, 400 it", 15, [*ZCA_30, "method.iterations=400"])]
# PDD_400 with the paper's forgetting-score curriculum (section 4.2) as its text reads: stage i distils only from
# real examples whose score lies in [3 (i-1), 3 i), i.e. its experts' real epochs see only that band (each stage.json
# has the fraction); measured before the last band was open-ended
PDD_400_FORGETTING = (
    PDD_400[0].replace("stage)", "stage, forgetting curriculum)"),
    10,
    [*PDD_400[2], "stages.curriculum=forgetting", "stages.curriculum_scope=real"],
)
# the same with equal-size bands: on this profile the fixed bands hold 94% and 3% of the examples (scores 0-2 / 3-5)
PDD_400_QUANTILE = (
    PDD_400[0].replace("stage)", "stage, quantile forgetting curriculum)"),
    10,
    [*PDD_400[2], "stages.curriculum=forgetting_quantile", "stages.curriculum_scope=real"],
)
# the curriculum as the public PDD code applies it (the default): the band chooses only the images a stage starts
# from; experts and transitions keep all real data; the last band open-ended
PDD_400_FORGETTING_INIT = (
    PDD_400[0].replace("stage)", "stage, forgetting curriculum on initialisation)"),
    10,
    [*PDD_400[2], "stages.curriculum=forgetting"],
)
ROWS += [PDD_400_FORGETTING, PDD_400_QUANTILE, PDD_400_FORGETTING_INIT]

# rows that start from the first stages of a finished row, (its name, IPC, how many stages; None: all): those
# stages are copied and only the later ones are distilled (their wall time counts the new stages and the evaluation
# only; stage_seconds sums every stage): PDD's scaling up, and stage-2 variants of the 2 x 5 row
EXTENDS = {
    **{pdd_m4(longer)[0]: (*pdd_m4(shorter)[:2], None) for shorter, longer in ((5, 7), (7, 8))},
    "PDD + MTT (2 x 5, 30 steps, ZCA, stage 2 from the transition point)": (*PDD_2X5_ROW[:2], 1),
    PDD_400_X3[0]: (*PDD_400[:2], None),
    PDD_400_NO_TRANSITION_X3[0]: (*PDD_400_NO_TRANSITION[:2], None),
}


def copy_stages(src: Path, dst: Path, keep: int | None) -> None:
    """A finished run folder copied with its first `keep` stages (all when None), as a run of those stages only."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(CHECKPOINTS))
    if keep is None:
        return
    for k in list_stages(dst)[keep:]:
        shutil.rmtree(dst / stage_name(k))
    folder = RunFolder(dst)
    run = folder.run_info()
    run["stage_hashes"] = run["stage_hashes"][:keep]
    write_json(folder.run_json, run)


# rows whose stages are also evaluated in the other evaluation modes (the row itself uses the recipe's: progressive)
EVAL_MODES = {"PDD + MTT (5 x 2)": ["union", "sequential"]}


def row_names(row: tuple[str, int, list[str]]) -> tuple[str, str]:
    """The names a command line gives a row by: "name" (every IPC of that name), or "name@IPC" (that one)."""
    return row[0], f"{row[0]}@{row[1]}"


def main(rows_spec: list = ROWS, work: Path = WORK, results: Path = RESULTS, common: tuple = ()) -> None:
    """Run the rows named on the command line ("name", or "name@IPC" for one IPC; all when none; their rows replace
    earlier ones in the results file), each on the MTT CPU recipe with `common` and then the row's overrides."""
    wanted = sys.argv[1:]
    if not wanted:
        shutil.rmtree(work, ignore_errors=True)
        Path(f"{results}.json").unlink(missing_ok=True)

    def position(row: tuple) -> int | None:
        """Where the command line names this row ("name" or "name@IPC"); None when it does not."""
        return next((i for i, w in enumerate(wanted) if w in row_names(row)), None)

    picked = [r for r in rows_spec if not wanted or position(r) is not None]
    acc = Accelerator()
    rows: list[dict] = []
    for name, ipc, overrides in sorted(picked, key=lambda r: position(r) or 0):
        tag = row_tag(name, ipc)
        shutil.rmtree(work / tag, ignore_errors=True)
        if name in EXTENDS:
            source, source_ipc, keep = EXTENDS[name]
            copy_stages(work / row_tag(source, source_ipc), work / tag, keep)
        recipe = hf_condense.load_recipe(
            RECIPE,
            [
                f"dataset.path={DATA}",
                f"stages.ipc={ipc}",
                f"output.dir={work / tag}",
                f"output.cache_dir={work / 'cache'}",
                "evaluation.random_real=false",
                *common,
                *overrides,
            ],
        )
        t0 = time.perf_counter()
        result = hf_condense.run(recipe, acc)
        seconds = time.perf_counter() - t0
        mean, std = result.distilled[-1]  # the last stage: the whole budget
        rows.append(
            {
                "method": name,
                "ipc": ipc,
                "acc": mean,
                "std": std,
                "seconds": seconds,
                "stage_seconds": stage_seconds(result.stages),
                "lr": result.stages[-1].lr,
                "per_stage": [[s.meta["ipc"], m, sd] for s, (m, sd) in zip(result.stages, result.distilled)],
            }
        )
        for mode in EVAL_MODES.get(name, []):  # the same stages under the other evaluation modes
            ps = hf_condense.load_progressive(work / tag)
            rows.append(replay_row(f"{name}, {mode} evaluation", ipc, ps, acc, overrides=[f"evaluation.mode={mode}"]))
        if result.whole_data:
            rows.append(
                {
                    "method": f"whole train set ({recipe.evaluation.whole_data_epochs} epochs)",
                    "ipc": None,
                    "acc": result.whole_data[0],
                    "std": result.whole_data[1],
                    "seconds": None,
                }
            )
        write(rows, results, rows_spec)


def replay_row(method: str, ipc: int, ps: hf_condense.ProgressiveSet, acc: Accelerator, **replay) -> dict:
    """A results row for saved stages replayed by `hf_condense.evaluate_progressive(**replay)`, timed."""
    t0 = time.perf_counter()
    per_stage = next(iter(hf_condense.evaluate_progressive(ps, accelerator=acc, **replay).values())).distilled
    return {
        "method": method,
        "ipc": ipc,
        "acc": per_stage[-1][0],
        "std": per_stage[-1][1],
        "seconds": time.perf_counter() - t0,
        "lr": replay["lr"] if replay.get("lr") is not None else ps.stages[-1].lr,
        "per_stage": [[s.ipc, m, sd] for s, (m, sd) in zip(ps.stages, per_stage)],
    }


def stage_seconds(stages: list) -> float:
    """The stages' distillation time, as each stage's metadata recorded it."""
    return sum(s.meta.get("seconds", 0) for s in stages)


def row_tag(name: str, ipc: int) -> str:
    """The output folder name of a row under WORK."""
    return f"{re.sub(r'[^A-Za-z0-9]+', '_', name)}_ipc{ipc}"


def write(mine: list[dict], results: Path = RESULTS, rows_spec: list = ROWS) -> None:
    """Merge this process's rows into the results file as it is now (several row subsets may run at once), in the
    order of `rows_spec`."""
    results.parent.mkdir(parents=True, exist_ok=True)
    with open(results.parent / ".write.lock", "w") as lock:  # rows running in parallel processes merge in turn
        fcntl.flock(lock, fcntl.LOCK_EX)
        merge(mine, results, rows_spec)


def merge(mine: list[dict], results: Path, rows_spec: list) -> None:
    """Replace this process's rows in the results files (json and markdown table)."""
    path = Path(f"{results}.json")
    keys = {(r["method"], r["ipc"]) for r in mine}
    rows = [r for r in (json.loads(path.read_text()) if path.is_file() else []) if (r["method"], r["ipc"]) not in keys]
    order = {(name, ipc): i for i, (name, ipc, _) in enumerate(rows_spec)}

    def rank(r: dict) -> tuple:
        """After the row it derives from: the longest ", "-separated prefix of its name that is a row of the spec."""
        parts = r["method"].split(", ")
        prefixes = (", ".join(parts[:n]) for n in range(len(parts), 0, -1))
        return next((order[(p, r["ipc"])] for p in prefixes if (p, r["ipc"]) in order), -1), r["method"]

    rows = sorted(rows + mine, key=rank)
    path.write_text(json.dumps(rows, indent=2) + "\n")
    lines = ["| method | IPC | test accuracy (%) | wall time (s) | eval lr |", "|---|---|---|---|---|"]
    for r in rows:
        ipc = r["ipc"] if r["ipc"] is not None else "all"
        t = f"{r['seconds']:.0f}" if r.get("seconds") else "-"
        lr = f"{r['lr']:.4g}" if r.get("lr") else "-"
        lines.append(f"| {r['method']} | {ipc} | {100 * r['acc']:.2f} ± {100 * r['std']:.2f} | {t} | {lr} |")
    staged = [r for r in rows if len(r.get("per_stage", [])) > 1]
    if staged:
        lines += ["", "Per-stage test accuracy (%) of the multi-stage rows, at cumulative IPC:", ""]
        lines += ["| method | per stage |", "|---|---|"]
        for r in staged:
            cells = [f"{ipc}: {100 * m:.2f} ± {100 * sd:.2f}" for ipc, m, sd in cumulative(r["per_stage"])]
            lines.append(f"| {r['method']} | {' · '.join(cells)} |")
    Path(f"{results}.md").write_text("\n".join(lines) + "\n")
    save_curves(rows, Path(f"{results}.png"))


def cumulative(per_stage: list) -> list[tuple[int, float, float]]:
    """A row's per-stage [IPC, mean, std] as (cumulative IPC, mean, std)."""
    return [(total, m, sd) for total, (_, m, sd) in zip(accumulate(ipc for ipc, _, _ in per_stage), per_stage)]


# the lines of the accuracy-versus-IPC figure: multi-stage rows (their cumulative stages), then single-stage rows
# (one point per IPC)
STAGED_CURVES = {
    "PDD + MTT, 8 x 2 (50 steps, M 4)": pdd_m4(8)[0],
    "PDD + MTT, 2 x 2 (30 steps)": pdd_30(2)[0],
    "PDD + MTT, 2 x 5": PDD_2X5_ROW[0],
    "PDD w/o transition, 2 x 5": PDD_2X5_NO_TRANSITION[0],
    "PDD + MTT, 3 x 5 (400 it per stage)": PDD_400_X3[0],
}
SINGLE_CURVES = {"MTT ZCA 30 steps (PDD 5 x 2 compute)": "MTT ZCA 30 steps", "random real": "random real"}


def save_curves(rows: list[dict], path: Path) -> None:
    """Accuracy against (cumulative) IPC for the progressive rows and the single-stage rows they compete with."""
    curves = {}
    for label, method in STAGED_CURVES.items():
        curves[label] = cumulative(next((r["per_stage"] for r in rows if r["method"] == method), []))
    for label, method in SINGLE_CURVES.items():
        curves[label] = sorted((r["ipc"], r["acc"], r["std"]) for r in rows if r["method"] == method)
    if any(curves.values()):
        save_accuracy_curve(curves, path, title="Fashion-MNIST, CPU profile")


if __name__ == "__main__":
    main()
