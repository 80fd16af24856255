"""Entry point: `accelerate launch -m hf_condense.experts recipe.yaml [key.path=value ...]`.

Builds the expert trajectories a recipe's method needs, ahead of distillation (each process trains its share).
"""

from __future__ import annotations

import argparse
import sys

from accelerate import Accelerator

from .config import RecipeError, load_recipe


def main(argv: list[str] | None = None) -> int:
    from .distill import prepare
    from .methods import METHODS
    from .trajectories import ExpertStore

    parser = argparse.ArgumentParser(prog="hf_condense.experts", description=__doc__.split("\n")[0])
    parser.add_argument("recipe", help="recipe YAML file")
    parser.add_argument("overrides", nargs="*", help="key.path=value overrides")
    args = parser.parse_args(argv)
    try:
        recipe = load_recipe(args.recipe, args.overrides)
        settings = getattr(METHODS[recipe.method.name].distiller, "expert_settings", None)
        if settings is None:
            raise RecipeError([f"method.name: {recipe.method.name!r} does not use expert trajectories"])
        ctx = prepare(recipe, Accelerator())
        store = ExpertStore(ctx)
        paths = store.build(settings(recipe.method), store.base_key(settings(recipe.method)))
        ctx.print(f"{len(paths)} expert(s) ready in {paths[0].parent}")
    except RecipeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
