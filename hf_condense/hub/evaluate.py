"""Retrain fresh networks on a replayed repo (Hub id or local folder): `evaluate_progressive(load_progressive(...))`.

Replays the stages (progressive, union or sequential) on any registered architecture (the ConvNets or timm names
such as resnet18); the recipe.yaml inside the repo names the real test set.
"""

from __future__ import annotations

from accelerate import Accelerator

from ..data.sources import RealData, load_real_data
from ..evaluation import RunResult, evaluate_synsets, random_real_stages
from ..methods import SynSet
from ..methods.context import make_accelerator
from ..stages.engine import make_context, run_data
from ..stages.recipe import load_recipe
from .replay import ProgressiveSet


def evaluate_progressive(
    ps: ProgressiveSet,
    models: list[str] | None = None,
    overrides: list[str] = (),
    random_real: bool = False,
    epochs: int | list[int] | None = None,
    accelerator: Accelerator | None = None,
    lr: float | None = None,
) -> dict[str, RunResult]:
    """Per architecture, the stages' scores (and optionally random real images of the same budgets); `epochs` (one
    number, or one per stage) and `lr` replace the stages' own epochs and learned lr (to compare sets at one schedule,
    or to ask how long a later stage should train)."""
    recipe = load_recipe(ps.recipe, list(overrides), notes=False)  # a stored recipe, any release's spelling
    accelerator = accelerator or make_accelerator()
    data = run_data(recipe, load_real_data(recipe.dataset))
    synsets = ps.synsets()
    check_fits(ps, synsets, data)  # before any preprocessing or training
    ctx = make_context(recipe, accelerator, data, preprocessor=ps.preprocessor)
    ev, seed = recipe.evaluation, recipe.seed
    synsets = _scheduled(synsets, epochs, lr)
    out = {}
    for name in models or [recipe.model.name]:
        result = RunResult(ps.folder, synsets)
        result.distilled = evaluate_synsets(ctx, ev, seed, synsets, model=name)
        if random_real:
            ipcs, stage_epochs = [s.meta["ipc"] for s in synsets], [s.meta["epochs"] for s in synsets]
            rand = _scheduled(random_real_stages(ctx, seed, ipcs, stage_epochs, ev.lr), None, lr)
            result.random_real = evaluate_synsets(ctx, ev, seed, rand, model=name, salt=1)
        out[name] = result
    return out


def check_fits(ps: ProgressiveSet, synsets: list[SynSet], data: RealData) -> None:
    """Refuse, in one line naming both, real data whose image shape or classes differ from the stages' (`synsets`)."""
    stored, given = tuple(synsets[0].images.shape[1:]), tuple(data.train_x.shape[1:])
    path = data.source.get("path")
    if stored != given:
        raise ValueError(
            f"dataset.path: {path!r} has {given} images (channels, height, width); the stages of {ps.source} hold "
            f"{stored} images"
        )
    if ps.class_names != data.class_names:
        raise ValueError(
            f"dataset.path: {path!r} has classes {short(data.class_names)}; the stages of {ps.source} have "
            f"{short(ps.class_names)}"
        )


def short(names: list[str], n: int = 6) -> str:
    """A class list in a line: its first n names and how many there are."""
    head = ", ".join(names[:n])
    return f"[{head}{', ...' if len(names) > n else ''}] ({len(names)})"


def _scheduled(synsets: list[SynSet], epochs: int | list[int] | None, lr: float | None) -> list[SynSet]:
    """The stages with their epochs (one number for all, or one per stage) and initial lr replaced where given."""
    per_stage = epochs if isinstance(epochs, list) else [epochs]
    if len(per_stage) == 1:
        per_stage = per_stage * len(synsets)
    if len(per_stage) != len(synsets):
        raise ValueError(f"epochs: got {len(epochs)} values for {len(synsets)} stages; give one, or one per stage")
    for s, e in zip(synsets, per_stage):
        if e is not None:
            s.meta["epochs"] = e
        if lr is not None:
            s.lr = lr
    return synsets
