"""`hf-condense experts recipe.yaml [key.path=value ...]` (also `accelerate launch -m hf_condense.experts ...`).

Builds the expert trajectories a recipe's method needs, ahead of distillation (each process trains its share): the
first stage's (on its forgetting-score band under a curriculum); later PDD stages' transition experts depend on the
stages before them and are built as the run reaches them.
"""

from __future__ import annotations

import argparse

from ..core.config import RecipeError
from ..methods import METHODS
from ..methods.context import make_accelerator
from ..stages.engine import StageEngine
from ..stages.recipe import Recipe
from . import COMMANDS
from .distill import prepare
from .errors import command, recipe_parser


def build_experts(recipe: Recipe) -> None:
    spec = METHODS[recipe.method.name]
    if not spec.capabilities.needs_experts:
        raise RecipeError([f"method.name: {recipe.method.name!r} does not use expert trajectories"])
    ctx = prepare(recipe, make_accelerator())
    engine = StageEngine(ctx, recipe)
    _, paths = spec.distiller(ctx).prepare_experts(engine.task(1, []))
    ctx.print(f"{len(paths)} expert(s) ready in {paths[0].parent}")


def build_parser(prog: str = "hf-condense experts") -> argparse.ArgumentParser:
    return recipe_parser(prog, COMMANDS["experts"])


def main(argv: list[str] | None = None, prog: str = "hf-condense experts") -> int:
    return command(build_parser(prog), build_experts, argv)
