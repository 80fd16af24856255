"""Entry point: `accelerate launch -m hf_condense.experts recipe.yaml [key.path=value ...]`.

Builds the expert trajectories a recipe's method needs, ahead of distillation (each process trains its share): the
first stage's (on its forgetting-score band under a curriculum); later PDD stages' transition experts depend on the
stages before them and are built as the run reaches them.
"""

from __future__ import annotations

import sys

from .config import Recipe, RecipeError
from .context import make_accelerator


def build_experts(recipe: Recipe) -> None:
    from .curriculum import curriculum_scores, stage_pool
    from .distill import prepare
    from .methods import METHODS
    from .trajectories import ExpertStore, real_subset

    settings = getattr(METHODS[recipe.method.name].distiller, "expert_settings", None)
    if settings is None:
        raise RecipeError([f"method.name: {recipe.method.name!r} does not use expert trajectories"])
    ctx = prepare(recipe, make_accelerator())
    store = ExpertStore(ctx)
    s = settings(recipe.stage_method(1))
    real = real_subset(stage_pool(ctx, 1, curriculum_scores(ctx)), len(ctx.train_y))
    _, paths = store.base_experts(s, real)
    ctx.print(f"{len(paths)} expert(s) ready in {paths[0].parent}")


def main(argv: list[str] | None = None) -> int:
    from .distill import cli

    return cli("hf_condense.experts", __doc__.split("\n")[0], build_experts, argv)


if __name__ == "__main__":
    sys.exit(main())
