"""`hf-condense distill recipe.yaml [key.path=value ...]` (also `accelerate launch -m hf_condense.distill ...`).

The whole pipeline of one recipe: validate the recipe (and then the data) before any compute, run the stages into a
folder laid out like a Hub dataset repo, evaluate them with the standard protocol beside random real images, write
the card and figures, upload when asked, and print the table.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
from accelerate import Accelerator

from ..core.config import RecipeError
from ..data.sources import load_real_data
from ..evaluation import RunResult, evaluate_run
from ..hub.card import render_card
from ..hub.experts import use_shared_experts
from ..hub.figures import save_accuracy_curve, save_grid, save_overview
from ..hub.push import Pusher, check_access
from ..methods import SynSet
from ..methods.context import RunContext, make_accelerator
from ..stages.engine import StageEngine, check_output_folder, make_context, run_data, versions
from ..stages.recipe import Recipe, data_errors
from ..stages.run_folder import RunFolder, stage_name
from . import COMMANDS
from .errors import command, recipe_parser


def prepare(recipe: Recipe, accelerator: Accelerator) -> RunContext:
    """Load and check the data, fit the preprocessing: everything before the first stage."""
    errors = check_output_folder(recipe)
    if errors:
        raise RecipeError(errors)
    if recipe.output.push_to_hub:  # a missing or read-only token is refused before hours of compute
        recipe.output.repo_id = check_access(recipe.output.repo_id)
    with accelerator.main_process_first():
        data = load_real_data(recipe.dataset)
    remap = data.source.get("label_remap")
    if remap:
        accelerator.print(
            f"note: dataset.label_column: {len(remap['source_ids'])} of the label ids have train examples; they are "
            f"re-encoded 0..{len(remap['source_ids']) - 1} (source ids {remap['source_ids'][:10]}"
            f"{', ...' if len(remap['source_ids']) > 10 else ''}, recorded in run.json as label_remap), "
            f"{remap['test_left_out']} test example(s) of other classes left out"
        )
    data = run_data(recipe, data)
    errors = data_errors(recipe, data)
    if errors:
        raise RecipeError(errors)
    ctx = make_context(recipe, accelerator, data)
    use_shared_experts(ctx, recipe)  # method.experts: verified into the expert cache before any stage
    return ctx


def finish(ctx: RunContext, rec: Recipe, result: RunResult) -> None:
    """Write results, figures and the card of the folder."""
    if not ctx.accelerator.is_main_process:
        return
    folder = RunFolder(result.folder)
    names = ctx.data.class_names
    pixels = [(ctx.preprocessor.to_pixels(s.images), s.labels) for s in result.stages]
    for i, (px, y) in enumerate(pixels, start=1):
        save_grid(px, y, names, folder.grid(i), title=f"stage {i}")
    save_overview(pixels, names, folder.overview)
    ipc_cum = [sum(rec.stages.ipc_of(j) for j in range(1, i + 1)) for i in range(1, len(result.stages) + 1)]
    if result.distilled:
        save_accuracy_curve(accuracy_curves(rec, result, ipc_cum), folder.curve, title=Path(rec.dataset.path).name)
    results = {
        **result.to_json(),
        "ipc_cumulative": ipc_cum,
        "eval_mode": rec.evaluation.mode,
        "eval_runs": rec.evaluation.runs,
        "model": rec.model.name,
        "processes": ctx.accelerator.num_processes,
        "threads": torch.get_num_threads(),
        "seconds": round(result.seconds, 1),
    }
    folder.write_results(results)
    write_card(ctx, rec, folder, results)


def accuracy_curves(rec: Recipe, result: RunResult, ipc_cum: list[int]) -> dict[str, list]:
    """The accuracy plot's lines: the method on each evaluated model, and random real images on each."""

    def pts(scores):
        return [(c, *s) for c, s in zip(ipc_cum, scores)]

    curves = {f"{rec.method.name} ({rec.model.name})": pts(result.distilled)}
    curves[f"random real ({rec.model.name})"] = pts(result.random_real)
    for name, r in result.models.items():
        curves[f"{rec.method.name} ({name})"] = pts(r["distilled"])
        curves[f"random real ({name})"] = pts(r["random_real"])
    return curves


def write_card(ctx: RunContext, rec: Recipe, folder: RunFolder, results: dict | None) -> None:
    render_card(
        folder.path,
        rec,
        folder.stage_metas(),
        results,
        ctx.preprocessor,
        ctx.data.class_names,
        tuple(ctx.train_x.shape[1:]),
        versions(),
        repo_id=rec.output.repo_id,
    )


def log_evaluation(accelerator: Accelerator, result: RunResult, model: str) -> None:
    """The evaluation curves per stage (step = stage number) to the trackers: each model's accuracy, random real's,
    and DD-Ranking's scores."""
    for k, (mean, _) in enumerate(result.distilled, start=1):
        values = {"test_accuracy": mean, f"evaluation/{model}/test_accuracy": mean}
        if k <= len(result.random_real):
            values[f"evaluation/{model}/random_real_accuracy"] = result.random_real[k - 1][0]
        for name, r in result.models.items():
            values[f"evaluation/{name}/test_accuracy"] = r["distilled"][k - 1][0]
            if r["random_real"]:
                values[f"evaluation/{name}/random_real_accuracy"] = r["random_real"][k - 1][0]
        score = result.scores()[k - 1]
        values.update({f"evaluation/{model}/{s}": v for s, v in score.items() if v is not None})
        accelerator.log(values, step=k)


def flat_config(d: dict, prefix: str = "") -> dict:
    """A nested recipe dict as the flat scalar `section.key` values that trackers accept."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat_config(v, f"{prefix}{k}."))
        elif isinstance(v, int | float | str | bool):
            out[f"{prefix}{k}"] = v
        elif v is not None:
            out[f"{prefix}{k}"] = str(v)
    return out


def run(recipe: Recipe, accelerator: Accelerator | None = None) -> RunResult:
    """Distil, evaluate and report one recipe; returns the stages and their scores."""
    out = recipe.output
    folder = RunFolder(out.dir)
    if "wandb" in out.log_with and "WANDB_DIR" not in os.environ:  # beside tensorboard's, not in the working dir
        folder.logs.mkdir(parents=True, exist_ok=True)
        os.environ["WANDB_DIR"] = str(folder.logs)
    accelerator = accelerator or make_accelerator(log_with=out.log_with or None, project_dir=folder.logs)
    t0 = time.perf_counter()
    ctx = prepare(recipe, accelerator)
    ev = recipe.evaluation
    if out.log_with:
        accelerator.init_trackers(Path(out.dir).name, config=flat_config(recipe.public_dict()))

    pusher = Pusher(out.dir, out.repo_id, out.private) if out.push_to_hub and accelerator.is_main_process else None
    rewrites = recipe.stages.scheme == "boost" and recipe.stages.boost_beta > 0  # boosting moves earlier stages

    def after_stage(k: int, stages: list[SynSet]) -> None:
        if accelerator.is_main_process:
            write_card(ctx, recipe, folder, None)
        if pusher is not None:
            pusher.push_stage(k, rewritten=rewrites)

    engine = StageEngine(ctx, recipe, on_stage=after_stage)
    try:
        stages = engine.run()
    finally:
        engine.folder.unlock()
    result = evaluate_run(ctx, ev, recipe.seed, stages, folder.path)
    result.seconds = time.perf_counter() - t0
    log_evaluation(accelerator, result, recipe.model.name)
    accelerator.end_training()
    finish(ctx, recipe, result)
    if pusher is not None and pusher.push_final():
        ctx.print(f"uploaded to https://huggingface.co/datasets/{pusher.repo_id}")
    ctx.print(result.table())
    if pusher is not None and pusher.failed:
        ctx.print(f"upload failed ({pusher.failed}); retry it alone with: {pusher.retry_command()}")
    ctx.print(
        f"output: {result.folder}  (load one stage: datasets.load_dataset({str(result.folder)!r}, "
        f"'{stage_name(len(stages))}'))"
    )
    return result


def build_parser(prog: str = "hf-condense distill") -> argparse.ArgumentParser:
    return recipe_parser(prog, COMMANDS["distill"])


def main(argv: list[str] | None = None, prog: str = "hf-condense distill") -> int:
    return command(build_parser(prog), run, argv)
