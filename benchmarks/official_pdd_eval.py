"""Evaluate the official ProgressiveDD code's saved stage images under this library's protocol, beside this library's
own stages, on the same fresh networks and seeds (issue #60; docs/findings.md section 8). Reads only files: the
official run's `images_<it>.pt`, `labels_<it>.pt` and `syn_lr_<it>.pt` (benchmarks/official_pdd.sh writes them) and a
run folder of ours whose preprocessing they share (both fit kornia's ZCA, eps 0.1, on the same train pixels).

    HF_CONDENSE_DATASETS=../shared/datasets python benchmarks/official_pdd_eval.py OUR_RUN_FOLDER \
        OFFICIAL_STAGE_DIR[:ITERATION] [OFFICIAL_STAGE_DIR[:ITERATION] ...]

Each official argument is one stage's folder (`.../interval1_epoch1-4`; ITERATION defaults to `best`); several make a
progressive set, stage 1 first. Prints one line per set: accuracy mean ± std over the recipe's evaluation networks.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from accelerate import Accelerator

from hf_condense.data.preprocess import Preprocessor
from hf_condense.data.sources import load_real_data
from hf_condense.evaluation.protocol import evaluate_synsets
from hf_condense.methods import SynSet
from hf_condense.stages.engine import make_context
from hf_condense.stages.recipe import load_recipe
from hf_condense.stages.run_folder import RunFolder


def official_stage(arg: str, previous: int) -> SynSet:
    """One official stage: its saved images past the `previous` ones it carries (later stages save the union)."""
    folder, _, it = arg.partition(":")
    it = it or "best"
    images = torch.load(Path(folder) / f"images_{it}.pt", map_location="cpu").detach().float()[previous:]
    labels = torch.load(Path(folder) / f"labels_{it}.pt", map_location="cpu").long()[previous:]
    lr = float(torch.load(Path(folder) / f"syn_lr_{it}.pt", map_location="cpu"))
    return SynSet(images, labels, lr)


def main(ours: str, official: list[str]) -> None:
    folder = RunFolder(ours)
    stages = len(official)
    recipe = load_recipe(
        str(folder.recipe), [f"stages.count={stages}", "output.dir=/tmp/official_pdd_eval"], notes=False
    )
    ctx = make_context(
        recipe, Accelerator(cpu=True), load_real_data(recipe.dataset), Preprocessor.load(folder.preprocessing)
    )
    theirs: list[SynSet] = []
    for arg in official:
        theirs.append(official_stage(arg, sum(len(s.images) for s in theirs)))
    mine = [folder.read_stage(k) for k in range(1, stages + 1)]
    for name, sets in (("this library's stages", mine), ("the official code's stages", theirs)):
        scores = evaluate_synsets(ctx, recipe.evaluation, recipe.seed, sets, mode=recipe.evaluation.mode)
        per_stage = ", ".join(f"{100 * m:.2f} ± {100 * s:.2f} (lr {x.lr:.4f})" for (m, s), x in zip(scores, sets))
        print(f"{name}, evaluated here ({recipe.evaluation.mode}): {per_stage}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
