"""Entry point: `accelerate launch -m hf_condense.distill recipe.yaml [key.path=value ...]`.

Validates the recipe (and then the data) before any compute, runs the stages into a folder laid out like a Hub
dataset repo, evaluates them with the standard protocol beside random real images, and prints the table.
"""

from __future__ import annotations

import argparse
import errno
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from accelerate import Accelerator

from .card import render_card
from .config import Recipe, RecipeError, load_recipe
from .context import RunContext, make_accelerator
from .data import check_against_data, load_real_data
from .engine import StageEngine, check_output_folder, versions
from .evaluation import Score, evaluate_synsets, random_real_stages, whole_data_reference
from .figures import save_accuracy_curve, save_grid
from .hub_layout import StageDataError, read_stage_meta, stage_name
from .io import write_json
from .methods.base import DivergenceError, SynSet
from .push import Pusher, check_access


@dataclass
class RunResult:
    """What a run produced: the stages, their scores and the references."""

    folder: Path
    stages: list[SynSet]
    distilled: list[Score] = field(default_factory=list)
    random_real: list[Score] = field(default_factory=list)
    whole_data: Score | None = None
    seconds: float = 0.0

    def table(self) -> str:
        def pct(s):
            return f"{100 * s[0]:6.2f} ± {100 * s[1]:5.2f}" if s else "       –       "

        lines = [
            f"{'stage':>6} {'IPC':>4} {'images':>6} {'lr':>9} {'accuracy (%)':>16} {'random real (%)':>16} "
            f"{'time (s)':>9}"
        ]
        cum = 0
        for i, s in enumerate(self.stages):
            cum += s.meta.get("ipc", 0)
            lines.append(
                f"{i + 1:>6} {cum:>4} {len(s.images):>6} {s.lr:>9.4g} "
                f"{pct(self.distilled[i] if i < len(self.distilled) else None):>16} "
                f"{pct(self.random_real[i] if i < len(self.random_real) else None):>16} "
                f"{s.meta.get('seconds', 0):>9.1f}"
            )
        if self.whole_data:
            lines.append(f"whole train set: {pct(self.whole_data).strip()} %")
        return "\n".join(lines)


def prepare(recipe: Recipe, accelerator: Accelerator) -> RunContext:
    """Load and check the data, fit the preprocessing: everything before the first stage."""
    errors = check_output_folder(recipe)
    if errors:
        raise RecipeError(errors)
    if recipe.output.push_to_hub:  # a missing or read-only token is refused before hours of compute
        recipe.output.repo_id = check_access(recipe.output.repo_id)
    with accelerator.main_process_first():
        data = load_real_data(recipe.dataset)
    errors = check_against_data(recipe, data)
    if errors:
        raise RecipeError(errors)
    return RunContext.build(recipe, accelerator, data)


def finish(ctx: RunContext, result: RunResult) -> None:
    """Write results, figures and the card of the folder."""
    if not ctx.accelerator.is_main_process:
        return
    folder, rec = result.folder, ctx.recipe
    for i, s in enumerate(result.stages, start=1):
        save_grid(
            ctx.preprocessor.to_pixels(s.images), s.labels, ctx.num_classes, folder / "images" / f"{stage_name(i)}.png"
        )
    ipc_cum = [sum(rec.stages.ipc_of(j) for j in range(1, i + 1)) for i in range(1, len(result.stages) + 1)]
    if result.distilled:
        curves = {
            rec.method.name: [(c, *s) for c, s in zip(ipc_cum, result.distilled)],
            "random real": [(c, *s) for c, s in zip(ipc_cum, result.random_real)],
        }
        save_accuracy_curve(curves, folder / "accuracy_vs_ipc.png", title=f"{Path(rec.dataset.path).name}")
    results = {
        "distilled": [list(s) for s in result.distilled],
        "random_real": [list(s) for s in result.random_real],
        "whole_data": list(result.whole_data) if result.whole_data else None,
        "ipc_cumulative": ipc_cum,
        "eval_mode": rec.evaluation.mode,
        "eval_runs": rec.evaluation.runs,
        "model": rec.model.name,
        "processes": ctx.accelerator.num_processes,
        "seconds": round(result.seconds, 1),
    }
    write_json(folder / "results.json", results)
    write_card(ctx, folder, results)


def write_card(ctx: RunContext, folder: Path, results: dict | None) -> None:
    from .hub_layout import list_stages

    metas = [read_stage_meta(folder / stage_name(k)) for k in list_stages(folder)]
    render_card(
        folder,
        ctx.recipe,
        metas,
        results,
        ctx.preprocessor,
        ctx.data.class_names,
        tuple(ctx.train_x.shape[1:]),
        versions(),
        repo_id=ctx.recipe.output.repo_id,
    )


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
    accelerator = accelerator or make_accelerator(log_with=out.log_with or None, project_dir=Path(out.dir) / "logs")
    t0 = time.perf_counter()
    ctx = prepare(recipe, accelerator)
    ev = recipe.evaluation
    if out.log_with:
        accelerator.init_trackers(Path(out.dir).name, config=flat_config(recipe.to_dict()))

    pusher = Pusher(out.dir, out.repo_id, out.private) if out.push_to_hub and accelerator.is_main_process else None
    rewrites = recipe.stages.scheme == "boost" and recipe.stages.boost_beta > 0  # boosting moves earlier stages

    def after_stage(k: int, stages: list[SynSet]) -> None:
        if accelerator.is_main_process:
            write_card(ctx, Path(recipe.output.dir), None)
        if pusher is not None:
            pusher.push_stage(k, rewritten=rewrites)

    stages = StageEngine(ctx, on_stage=after_stage).run()
    result = RunResult(Path(recipe.output.dir), stages)
    ctx.print(f"evaluating {len(stages)} stage(s): {ev.runs} network(s), {ev.epochs} epochs per stage, {ev.mode}")
    result.distilled = evaluate_synsets(ctx, stages)
    if ev.random_real:
        rand = random_real_stages(ctx, [s.meta["ipc"] for s in stages], [s.meta["epochs"] for s in stages])
        result.random_real = evaluate_synsets(ctx, rand, salt=1)
    if ev.whole_data:
        result.whole_data = whole_data_reference(ctx)
    result.seconds = time.perf_counter() - t0
    for k, (mean, _) in enumerate(result.distilled, start=1):
        accelerator.log({"test_accuracy": mean}, step=k)
    accelerator.end_training()
    finish(ctx, result)
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


def cli(prog: str, description: str, body, argv: list[str] | None = None) -> int:
    """Shared command line of the entry modules: a recipe path plus overrides; errors as one clear message."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("recipe", help="recipe YAML file")
    parser.add_argument("overrides", nargs="*", help="key.path=value overrides, e.g. method.iterations=200")
    args = parser.parse_args(argv)
    try:
        body(load_recipe(args.recipe, args.overrides))
    except (RecipeError, DivergenceError, StageDataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2 if isinstance(e, RecipeError) else 3
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
        print(
            f"error: no space left on the device while writing {e.filename or 'a file'}; every finished unit is "
            "kept: free some space and rerun the same command to resume",
            file=sys.stderr,
        )
        return 4
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli("hf_condense.distill", __doc__.split("\n")[0], run, argv)


if __name__ == "__main__":
    sys.exit(main())
