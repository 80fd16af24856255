"""Per-stage trajectory-matching diagnostics of finished PDD + MTT rows of a benchmark table.

For each stage: the experts it matched, how far they move in M expert epochs (mean ||theta*_{t+M} - theta*_t|| over
experts and start epochs: the distance the student must cover), the matching loss over the first and last tenth of
its iterations, its learned lr and its cumulative accuracy. Reads the rows' output folders and the expert cache
only (nothing is retrained); run after the rows themselves.

    python benchmarks/stage_matching.py fashion_mnist_findings "PDD + MTT (5 x 2, 50 steps, ZCA, lr_lr 1e-5)" ...
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from accelerate import Accelerator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import RESULTS, finished_folder  # noqa: E402

import hf_condense  # noqa: E402
from hf_condense.cli.errors import guarded  # noqa: E402
from hf_condense.data.sources import load_real_data  # noqa: E402
from hf_condense.methods.experts import ExpertStore  # noqa: E402
from hf_condense.methods.mtt import expert_settings, stage_experts  # noqa: E402
from hf_condense.stages.curriculum import curriculum_scores, stage_pool  # noqa: E402
from hf_condense.stages.engine import make_context  # noqa: E402
from hf_condense.stages.recipe import load_recipe  # noqa: E402

OUT = RESULTS / "fashion_mnist_stage_matching.md"


def stage_rows(table: str, name: str, acc: Accelerator) -> list[str]:
    """The table rows of one finished benchmark row (seed 0), one per stage."""
    ps = hf_condense.load_progressive(finished_folder(table, name))
    recipe = load_recipe(ps.recipe, notes=False)
    ctx = make_context(recipe, acc, load_real_data(recipe.dataset), preprocessor=ps.preprocessor)
    store, synsets, ev = ExpertStore(ctx, train=False), ps.synsets(), recipe.evaluation.schedule()
    st, seed = recipe.stages, recipe.seed
    scores = curriculum_scores(ctx, st, seed)  # a curriculum row's forgetting scores, cached by its run
    pools = [stage_pool(ctx, st, seed, k, scores) for k in range(1, len(synsets) + 1)]
    accuracy = ps.results["distilled"] if ps.results else [[float("nan")]] * len(synsets)
    out = []
    for i, syn in enumerate(synsets, start=1):
        cfg = recipe.stage_method(i)
        s = expert_settings(cfg, seed)
        earlier = synsets[: i - 1] if recipe.stages.use_transition else []
        key, paths = stage_experts(store, cfg, earlier, ev, seed, pools[:i])
        starts = range(cfg.min_start_epoch, cfg.max_start_epoch)
        trajs = [store.trajectory(p, key, s.epochs) for p in paths]
        dist = sum(float((t[e + cfg.expert_epochs] - t[e]).norm()) for t in trajs for e in starts)
        log = syn.meta["log"]
        out.append(
            f"| {name} | {i} | {len(paths)} | {cfg.expert_epochs} | {dist / (len(trajs) * len(starts)):.3f} | "
            f"{log['loss_start']:.3f} | {log['loss_end']:.3f} | {syn.lr:.4f} | {100 * accuracy[i - 1][0]:.2f} |"
        )
    return out


def write(table: str, names: list[str]) -> None:
    acc = Accelerator()
    head = [
        "| row | stage | experts | M | expert distance | loss, first 10% | last 10% | learned lr | accuracy (%) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    old = OUT.read_text().splitlines()[2:] if OUT.is_file() else []
    rows = [r for r in old if r.split(" | ")[0].removeprefix("| ") not in names]
    for name in names:
        rows += stage_rows(table, name, acc)
    OUT.write_text("\n".join(head + rows) + "\n")
    print(json.dumps({"written": str(OUT), "rows": len(rows)}))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/stage_matching.py", description=__doc__.splitlines()[0])
    p.add_argument("table", help="a table under benchmarks/tables/")
    p.add_argument("rows", nargs="+", help="finished PDD + MTT rows of it (seed 0)")
    args = p.parse_args(argv)
    return guarded(lambda: write(args.table, args.rows))


if __name__ == "__main__":
    sys.exit(main())
