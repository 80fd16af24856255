"""`hf-condense experts recipe.yaml [key.path=value ...]` (also `accelerate launch -m hf_condense.experts ...`), and
`hf-condense experts push recipe.yaml REPO_ID [--private] [key.path=value ...]`.

Builds the expert trajectories a recipe's method needs, ahead of distillation (each process trains its share): the
first stage's (on its forgetting-score band under a curriculum); later PDD stages' transition experts depend on the
stages before them and are built as the run reaches them. `push` then publishes them as a Hub model repo (one file per
expert, the manifest experts.json, a model card) in one commit, access checked before any training; a recipe names
such a repo with `method.experts` (hub/experts.py).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import yaml

from ..core.config import RecipeError
from ..core.io import write_text
from ..core.paths import unwritable
from ..hub.experts import card, upload, write_repo
from ..hub.push import UploadFailed, check_access
from ..methods import METHODS
from ..methods.context import make_accelerator
from ..methods.experts import ExpertStore
from ..methods.mtt import expert_settings
from ..stages.engine import StageEngine
from ..stages.recipe import Recipe, load_recipe, public_recipe
from . import COMMANDS
from .distill import prepare
from .errors import command, guarded, recipe_parser


def build_experts(recipe: Recipe) -> tuple:
    """(context, key, paths) of the first stage's experts, built where missing."""
    spec = METHODS[recipe.method.name]
    if not spec.capabilities.needs_experts:
        raise RecipeError([f"method.name: {recipe.method.name!r} does not use expert trajectories"])
    ctx = prepare(recipe, make_accelerator())
    engine = StageEngine(ctx, recipe)
    key, paths = spec.distiller(ctx).prepare_experts(engine.task(1, []))
    ctx.print(f"{len(paths)} expert(s) ready in {paths[0].parent}")
    return ctx, key, paths


def push_experts(
    recipe: Recipe, repo_id: str, private: bool = False, recipe_arg: str = "RECIPE", folder: bool = False
) -> str:
    """Check write access, build the missing experts, then upload them with their manifest and card in one commit.
    A failed upload leaves the cache as it was and says how to retry. `folder`: write the repo's layout into the
    local folder `repo_id` instead (offline sharing, a mirror; `method.experts` reads it as a repo)."""
    if recipe.stages.curriculum != "none" and recipe.curriculum_scope == "real":
        raise RecipeError(
            ["stages.curriculum_scope: experts trained on a forgetting band are not shared; push a recipe without one"]
        )
    if folder:
        why = unwritable(repo_id, "REPO_ID") or (
            f"{repo_id}: holds files already; choose an empty or new folder" if any(Path(repo_id).glob("*")) else None
        )
        if why:
            raise RecipeError([why])
    retry = f"retry: hf-condense experts push {recipe_arg} {repo_id}" + (" --private" if private else "")
    full = repo_id if folder else check_access(repo_id, retry=retry)
    ctx, key, paths = build_experts(recipe)
    settings, store = expert_settings(recipe.stage_method(1), recipe.seed), ExpertStore(ctx)
    text = yaml.safe_dump(public_recipe(recipe.public_dict()), sort_keys=False)

    def lay_out(where: Path, name: str) -> None:
        info = write_repo(where, store, settings, key, paths, ctx.data.source)
        write_text(where / "README.md", card(info, name, text))

    if folder:
        lay_out(Path(repo_id), Path(repo_id).name)
        ctx.print(f"wrote {len(paths)} expert(s) to {repo_id} (use: method.experts: {repo_id})")
        return repo_id
    with tempfile.TemporaryDirectory(prefix="hf_condense-experts-") as tmp:
        lay_out(Path(tmp), full)
        try:
            upload(Path(tmp), full, private)
        except Exception as e:  # the cache is only read: nothing local changes
            raise UploadFailed(
                f"upload of {len(paths)} expert(s) to {full} failed ({type(e).__name__}: {e}); the local experts are "
                f"kept; {retry}"
            ) from None
    ctx.print(f"uploaded {len(paths)} expert(s) to https://huggingface.co/{full} (use: method.experts: {full})")
    return full


def build_parser(prog: str = "hf-condense experts") -> argparse.ArgumentParser:
    parser = recipe_parser(prog, COMMANDS["experts"])
    parser.epilog = (
        f"{parser.epilog}\n\nShare them: {prog} push RECIPE REPO_ID [--private] [key.path=value ...] uploads the "
        "experts (built first where missing)\nto a Hub model repo that recipes name with method.experts."
    )
    return parser


def build_push_parser(prog: str = "hf-condense experts push") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="upload the experts a recipe builds (building the missing ones first) to a Hub model repo, in one "
        "commit, with experts.json and a model card; recipes reuse them with method.experts: REPO_ID",
    )
    parser.add_argument("recipe", help="recipe YAML file, or the name of a shipped recipe (`hf-condense recipes`)")
    parser.add_argument("repo_id", help="Hub model repo, e.g. my-org/cifar10-convnet-experts")
    parser.add_argument("overrides", nargs="*", default=[], help="key.path=value overrides")
    parser.add_argument("--private", action="store_true", help="create the repo as private")
    parser.add_argument(
        "--folder",
        action="store_true",
        help="REPO_ID is a local folder: write the repo's layout there instead of uploading (offline, mirrors)",
    )
    return parser


def main(argv: list[str] | None = None, prog: str = "hf-condense experts") -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["push"]:
        args = build_push_parser(f"{prog} push").parse_intermixed_args(argv[1:])  # flags before or after overrides

        return guarded(
            lambda: push_experts(
                load_recipe(args.recipe, args.overrides), args.repo_id, args.private, args.recipe, args.folder
            )
        )
    return command(build_parser(prog), build_experts, argv)
