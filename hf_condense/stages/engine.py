"""The stage engine: one code path for single-stage runs, PDD, SeqMatch, Boost-DD and the ablations.

The engine alone reads the recipe's scheme: stage i's `StageTask` gets the earlier stages, the scheme's flags
(conditioning, transition, boost beta), its own method config, the protocol's training schedule, its seed and its
real pool; the method does the rest. What a method's capabilities say, the engine acts on: it has the experts of a
method that needs them built before the stage, stores the learned lr, and refuses soft labels from a method that
does not learn labels. Each finished stage is written before the next starts, so rerunning the same command resumes
at the first unfinished stage; a folder made by a different recipe is refused, never mixed.
"""

from __future__ import annotations

import sys
import time
from functools import cached_property
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from ..core.config import RecipeError
from ..data.preprocess import Preprocessor
from ..data.sources import RealData
from ..methods import METHODS, StageTask, SynSet
from ..methods.context import RunContext, cpu_threads
from .curriculum import curriculum_scores, stage_pool
from .recipe import Recipe, recipe_to_yaml
from .run_folder import RunFolder


def versions() -> dict[str, str]:
    import accelerate
    import datasets
    import huggingface_hub
    import timm

    from ..core.version import __version__

    return {
        "hf_condense": __version__,
        "torch": torch.__version__,
        "datasets": datasets.__version__,
        "accelerate": accelerate.__version__,
        "timm": timm.__version__,
        "huggingface_hub": huggingface_hub.__version__,
    }


def public_command(argv: list[str]) -> str:
    """The command line as run.json records it (it is uploaded): absolute paths by their last component only."""

    def short(token: str) -> str:
        key, eq, value = token.rpartition("=") if "=" in token else ("", "", token)
        return f"{key}{eq}{Path(value).name}" if Path(value).is_absolute() else token

    return " ".join(short(t) for t in argv)


def run_data(recipe: Recipe, data: RealData) -> RealData:
    """The real data a recipe's run uses: with `evaluation.select: validation`, its validation split held out of the
    train split first (the same examples for a seed, in distillation and in a later `evaluate`)."""
    ev = recipe.evaluation
    return data.hold_out(ev.validation_per_class, recipe.seed) if ev.select == "validation" else data


def make_context(
    recipe: Recipe, accelerator: Accelerator, data: RealData, preprocessor: Preprocessor | None = None
) -> RunContext:
    """The run context of a recipe: its data in the input space of its preprocessing, its model and augmentation;
    torch's CPU thread count set first (`cpu_threads`), and TF32 on CUDA as the recipe says."""
    threads, source = cpu_threads(recipe.threads)
    torch.set_num_threads(threads)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = recipe.tf32
    out = recipe.output
    if accelerator.device.type == "cpu":
        accelerator.print(f"torch: {threads} CPU thread(s) per process ({source})")
    return RunContext.build(
        accelerator, data, recipe.model, recipe.preprocess, recipe.augment.strategy, out.cache_dir, preprocessor
    )


def check_output_folder(recipe: Recipe) -> list[str]:
    """Refuse an output path that is a file, or a folder holding another recipe's run (checked before compute).

    A run whose finished stages agree with this recipe's first stages is resumed, or extended when the recipe asks
    for more stages (PDD's scaling up), without redoing them.
    """
    return RunFolder(recipe.output.dir).check(
        recipe.stage_hashes(), recipe.earlier_hashes(), recipe.equivalent_hashes()
    )


def seed_of_stage(recipe: Recipe, stage: int) -> int:
    return recipe.seed * 1000 + stage


class StageEngine:
    """Runs the stages of a recipe into an output folder, resuming where an earlier run stopped."""

    def __init__(self, ctx: RunContext, recipe: Recipe, on_stage=None):
        self.ctx = ctx
        self.recipe = recipe
        self.folder = RunFolder(recipe.output.dir)
        self.spec = METHODS[recipe.method.name]
        self.on_stage = on_stage  # callback(stage number, stages) after each stage is written (card, Hub push)

    @property
    def is_main(self) -> bool:
        return self.ctx.accelerator.is_main_process

    def start_folder(self) -> None:
        errors = check_output_folder(self.recipe)
        if errors:
            raise RecipeError(errors)
        if self.is_main:
            info = {
                "versions": versions(),
                "command": public_command(sys.argv),
                "threads": torch.get_num_threads(),
                "tf32": self.recipe.tf32,
            }
            if "label_remap" in self.ctx.data.source:  # the stages' label ids against the source's
                info["label_remap"] = self.ctx.data.source["label_remap"]
            notes = self.folder.start(
                self.recipe.stage_hashes(),
                recipe_to_yaml(self.recipe),
                info,
                self.ctx.preprocessor,
                self.recipe.equivalent_hashes(),
            )
            for line in notes:
                self.ctx.print(line)
        self.ctx.accelerator.wait_for_everyone()

    def finished(self) -> list[SynSet]:
        """Stages 1..k already written by this recipe (a gap or a foreign stage is an error)."""
        done, same = [], self.recipe.equivalent_hashes()
        for k in self.folder.stages():
            meta = self.folder.stage_meta(k)
            if k != len(done) + 1 or meta.get("recipe_hash") not in {self.recipe.distill_hash(k), *same[k - 1]}:
                raise RecipeError([f"output.dir: {self.folder.stage_dir(k)} does not continue this recipe's stages"])
            done.append(self.folder.read_stage(k))
        return done

    def task(self, k: int, previous: list[SynSet]) -> StageTask:
        """Everything stage k's method may read, resolved from the recipe."""
        st, ev = self.recipe.stages, self.recipe.evaluation
        return StageTask(
            stage=k,
            ipc=st.ipc_of(k),
            config=self.recipe.stage_method(k),
            previous=previous,
            conditioning=st.use_conditioning,
            transition=st.use_transition,
            boost_beta=st.boost_beta if st.scheme == "boost" else 0.0,
            pool=self.real_pools[k - 1],
            init_pool=self.pools[k - 1],
            seed=seed_of_stage(self.recipe, k),
            train=ev.schedule(),
            run_seed=self.recipe.seed,
            checkpoint_dir=self.folder.checkpoint_dir(k),
            earlier_pools=self.real_pools[: k - 1],
            probe=ev.probe(),
        )

    @cached_property
    def pools(self) -> list[list[torch.Tensor]]:
        """Per stage, per class, the real train examples it may use (all, or its forgetting-score band)."""
        st, seed = self.recipe.stages, self.recipe.seed
        return [stage_pool(self.ctx, st, seed, k, self.forgetting) for k in range(1, st.count + 1)]

    @property
    def real_pools(self) -> list[list[torch.Tensor]]:
        """Per stage, the real data its matching sees: its band with `curriculum_scope: real`, else everything."""
        if self.recipe.curriculum_scope == "real":
            return self.pools
        return [self.ctx.class_indices] * self.recipe.stages.count

    @cached_property
    def forgetting(self) -> torch.Tensor | None:
        """The curriculum's forgetting scores (None without one), counted (or read from the cache) once per run."""
        return curriculum_scores(self.ctx, self.recipe.stages, self.recipe.seed)

    def stage_meta(self, k: int, seconds: float, log: dict, task: StageTask) -> dict:
        def fraction(pool: list[torch.Tensor]) -> float:
            return round(sum(len(p) for p in pool) / len(self.ctx.train_y), 4)

        st = self.recipe.stages
        curriculum = {}
        if st.curriculum != "none":  # which curriculum shaped the stage, and how much data each part drew on
            curriculum = {"curriculum": {"kind": st.curriculum, "scope": self.recipe.curriculum_scope}}
            curriculum["curriculum"]["init_fraction"] = fraction(task.start_pool)
            if st.curriculum == "forgetting":
                lo, hi = st.forgetting_band * (k - 1), st.forgetting_band * k
                curriculum["curriculum"]["band"] = [lo, None if k == st.count else hi]
        return {
            **curriculum,
            "real_fraction": fraction(task.pool),
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
            self.folder.write_stage(k, syn, meta, self.ctx.data.class_names, self.ctx.preprocessor)
        syn.meta = {**meta, "stage": k, "lr": syn.lr}

    def distill(self, distiller, task: StageTask):
        """One stage: the experts first when the method needs them, then the method; its output checked against
        what its capabilities declare."""
        if self.spec.capabilities.needs_experts:
            task.experts = distiller.prepare_experts(task)
        out = distiller.distill(task)
        if out.stage.soft_labels is not None and not self.spec.capabilities.learns_labels:
            raise TypeError(
                f"method {self.recipe.method.name!r} returned soft labels but does not declare learns_labels"
            )
        return out

    def run(self) -> list[SynSet]:
        self.start_folder()
        stages = self.finished()
        if stages:
            self.ctx.print(
                f"resuming: {len(stages)} of {self.recipe.stages.count} stage(s) already in {self.folder.path}"
            )
        if self.forgetting is not None and self.is_main:  # saved with the output
            self.folder.save_forgetting(self.forgetting)
        distiller = self.spec.distiller(self.ctx)
        for k in range(len(stages) + 1, self.recipe.stages.count + 1):
            set_seed(seed_of_stage(self.recipe, k))
            t0 = time.perf_counter()
            task = self.task(k, stages)
            out = self.distill(distiller, task)
            seconds = time.perf_counter() - t0
            if out.previous is not None:  # boosting moved earlier blocks: rewrite them
                for j, syn in enumerate(out.previous, start=1):
                    self.write(j, syn, stages[j - 1].meta)
                stages = list(out.previous)
            meta = self.stage_meta(k, seconds, out.log, task)
            self.write(k, out.stage, {**out.stage.meta, **meta})
            stages.append(out.stage)
            if self.is_main:
                self.folder.finish_stage(k)
            self.ctx.print(
                f"stage {k}/{self.recipe.stages.count}: {len(out.stage.images)} images, "
                f"lr {out.stage.lr:.4g}, {seconds:.1f}s, "
                f"{100 * meta['real_fraction']:.0f}% of the real data"
                + (
                    f", initialised from {100 * meta['curriculum']['init_fraction']:.0f}%"
                    if task.init_pool is not task.pool
                    else ""
                )
            )
            self.ctx.accelerator.wait_for_everyone()
            if self.on_stage is not None:
                self.on_stage(k, stages)
        return stages
