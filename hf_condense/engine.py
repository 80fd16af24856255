"""The stage engine: one code path for single-stage runs, PDD, SeqMatch, Boost-DD and the ablations.

Stage i gets the earlier stages, the scheme's flags (conditioning, transition, boost beta) and its own method
config; the method does the rest. Each finished stage is written before the next starts, so rerunning the same
command resumes at the first unfinished stage; a folder made by a different recipe is refused, never mixed.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from functools import cached_property
from pathlib import Path

import torch
from accelerate.utils import set_seed

from .config import Recipe, RecipeError, recipe_to_yaml
from .context import RunContext
from .curriculum import curriculum_scores, stage_pool
from .hub_layout import list_stages, read_stage, read_stage_meta, stage_name, write_stage
from .io import recover_interrupted_writes, save_safetensors, write_json, write_text
from .methods import METHODS
from .methods.base import StageTask, SynSet


def versions() -> dict[str, str]:
    import accelerate
    import datasets
    import huggingface_hub
    import timm

    from . import __version__

    return {
        "hf_condense": __version__,
        "torch": torch.__version__,
        "datasets": datasets.__version__,
        "accelerate": accelerate.__version__,
        "timm": timm.__version__,
        "huggingface_hub": huggingface_hub.__version__,
    }


def check_output_folder(recipe: Recipe) -> list[str]:
    """Refuse an output path that is a file, or a folder holding another recipe's run (checked before compute).

    A run whose stages agree with this recipe's first stages is resumed, or extended when the recipe asks for
    more stages (PDD's scaling up), without redoing them.
    """
    folder = Path(recipe.output.dir)
    if folder.exists() and not folder.is_dir():
        return [f"output.dir: {str(folder)!r} is a file; give a folder path"]
    if not (folder.is_dir() and any(folder.iterdir())):
        return []
    run = folder / "run.json"
    if not run.is_file():
        return [f"output.dir: {str(folder)!r} is not empty and holds no hf_condense run; choose another folder"]
    try:
        old = json.loads(run.read_text()).get("stage_hashes")
    except ValueError:
        return [f"output.dir: {run} is corrupt; remove the folder or choose another one"]
    if not isinstance(old, list):
        return [f"output.dir: {run} was written by an older hf_condense (no stage hashes); choose another folder"]
    for k, (a, b) in enumerate(zip(old, recipe.stage_hashes()), start=1):
        if a != b:
            return [
                f"output.dir: {str(folder)!r} holds stages of a different recipe (stage {k}: hash {a}, this recipe "
                f"{b}); choose another folder or remove it"
            ]
    written = list_stages(folder)
    if len(written) > recipe.stages.count:
        return [
            f"output.dir: {str(folder)!r} holds {len(written)} stages but stages.count is {recipe.stages.count}; "
            "raise stages.count to extend the run, or choose another folder"
        ]
    return []


def seed_of_stage(recipe: Recipe, stage: int) -> int:
    return recipe.seed * 1000 + stage


class StageEngine:
    """Runs the stages of a recipe into an output folder, resuming where an earlier run stopped."""

    def __init__(self, ctx: RunContext, on_stage=None):
        self.ctx = ctx
        self.recipe = ctx.recipe
        self.folder = Path(self.recipe.output.dir)
        self.spec = METHODS[self.recipe.method.name]
        self.on_stage = on_stage  # callback(stage number, folder) after each stage is written (Hub push)

    @property
    def checkpoints(self) -> Path:
        return self.folder / ".checkpoints"

    @property
    def is_main(self) -> bool:
        return self.ctx.accelerator.is_main_process

    def start_folder(self) -> None:
        errors = check_output_folder(self.recipe)
        if errors:
            raise RecipeError(errors)
        if self.is_main:
            self.folder.mkdir(parents=True, exist_ok=True)
            for folder in [self.folder, *self.checkpoints.glob("stage_*")]:
                for line in recover_interrupted_writes(folder):
                    self.ctx.print(f"{folder}: {line}")
            write_text(self.folder / "recipe.yaml", recipe_to_yaml(self.recipe))
            write_json(
                self.folder / "run.json",
                {"stage_hashes": self.recipe.stage_hashes(), "versions": versions(), "command": " ".join(sys.argv)},
            )
            self.ctx.preprocessor.save(self.folder / "preprocessing.safetensors")
        self.ctx.accelerator.wait_for_everyone()

    def finished(self) -> list[SynSet]:
        """Stages 1..k already written by this recipe (a gap or a foreign stage is an error)."""
        done = []
        for k in list_stages(self.folder):
            meta = read_stage_meta(self.folder / stage_name(k))
            if k != len(done) + 1 or meta.get("recipe_hash") != self.recipe.distill_hash(k):
                raise RecipeError(
                    [f"output.dir: {self.folder / stage_name(k)} does not continue this recipe's stages"]
                )
            done.append(read_stage(self.folder / stage_name(k)))
        return done

    def task(self, k: int, previous: list[SynSet]) -> StageTask:
        st = self.recipe.stages
        return StageTask(
            stage=k,
            ipc=st.ipc_of(k),
            config=self.recipe.stage_method(k),
            previous=previous,
            conditioning=st.use_conditioning,
            transition=st.use_transition,
            boost_beta=st.boost_beta if st.scheme == "boost" else 0.0,
            pool=self.pools[k - 1],
            seed=seed_of_stage(self.recipe, k),
            checkpoint_dir=self.checkpoints / stage_name(k),
            earlier_pools=self.pools[: k - 1],
        )

    @cached_property
    def pools(self) -> list[list[torch.Tensor]]:
        """Per stage, per class, the real train examples it may use (all, or its forgetting-score band)."""
        return [stage_pool(self.ctx, k, self.forgetting) for k in range(1, self.recipe.stages.count + 1)]

    @cached_property
    def forgetting(self) -> torch.Tensor | None:
        """The curriculum's forgetting scores (None without one), counted (or read from the cache) once per run and
        saved with the output."""
        scores = curriculum_scores(self.ctx)
        if scores is not None and self.is_main:
            save_safetensors({"scores": scores}, self.folder / "forgetting.safetensors")
        return scores

    def stage_meta(self, k: int, seconds: float, log: dict, pool: list[torch.Tensor]) -> dict:
        return {
            "real_fraction": round(sum(len(p) for p in pool) / len(self.ctx.train_y), 4),
            "ipc": self.recipe.stages.ipc_of(k),
            "epochs": self.recipe.evaluation.epochs,
            "method": self.recipe.method.name,
            "scheme": self.recipe.stages.scheme,
            "recipe_hash": self.recipe.distill_hash(k),
            "seconds": round(seconds, 2),
            "learned_lr": self.spec.capabilities.learns_lr,
            "synthetic": self.spec.capabilities.synthetic,
            "log": log,
        }

    def write(self, k: int, syn: SynSet, meta: dict) -> None:
        if self.is_main:
            write_stage(self.folder, k, syn, meta, self.ctx.data.class_names, self.ctx.preprocessor)
        syn.meta = {**meta, "stage": k, "lr": syn.lr}

    def run(self) -> list[SynSet]:
        self.start_folder()
        stages = self.finished()
        if stages:
            self.ctx.print(f"resuming: {len(stages)} of {self.recipe.stages.count} stage(s) already in {self.folder}")
        distiller = self.spec.distiller(self.ctx)
        for k in range(len(stages) + 1, self.recipe.stages.count + 1):
            set_seed(seed_of_stage(self.recipe, k))
            t0 = time.perf_counter()
            task = self.task(k, stages)
            out = distiller.distill(task)
            seconds = time.perf_counter() - t0
            if out.previous is not None:  # boosting moved earlier blocks: rewrite them
                for j, syn in enumerate(out.previous, start=1):
                    self.write(j, syn, stages[j - 1].meta)
                stages = list(out.previous)
            self.write(k, out.stage, {**out.stage.meta, **self.stage_meta(k, seconds, out.log, task.pool)})
            stages.append(out.stage)
            if self.is_main:
                shutil.rmtree(self.checkpoints / stage_name(k), ignore_errors=True)
            self.ctx.print(
                f"stage {k}/{self.recipe.stages.count}: {len(out.stage.images)} images, "
                f"lr {out.stage.lr:.4g}, {seconds:.1f}s, "
                f"{100 * sum(len(p) for p in task.pool) / len(self.ctx.train_y):.0f}% of the real data"
            )
            self.ctx.accelerator.wait_for_everyone()
            if self.on_stage is not None:
                self.on_stage(k, stages)
        return stages
