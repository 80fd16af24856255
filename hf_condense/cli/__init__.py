"""The cli layer: the command lines, all through one error boundary (cli/errors.py).

    hf-condense distill recipe.yaml [key.path=value ...]     distil, evaluate, write the folder (and push)
    hf-condense experts recipe.yaml [key.path=value ...]     build a trajectory-matching recipe's experts ahead
    hf-condense evaluate SOURCE [options]                    replay a repo or folder on fresh networks
    hf-condense push FOLDER REPO_ID [--private]              upload a finished folder
    hf-condense recipes [show NAME | copy NAME PATH]         the shipped recipes (`distill NAME` runs one)
    hf-condense --version

`python -m hf_condense.distill` (and `.experts`, `.evaluate`, `.push`) and `accelerate launch -m hf_condense.distill`
run the same commands.
"""

from __future__ import annotations

import argparse
import sys

COMMANDS = {
    "distill": "distil a recipe's stages, evaluate them, write the folder",
    "experts": "build the expert trajectories of a recipe ahead of distillation",
    "evaluate": "replay a distilled repo or folder on fresh networks",
    "push": "upload a finished folder to a Hub dataset repo",
    "recipes": "list the shipped recipes, show one, or copy one to edit",
}


def build_parser() -> argparse.ArgumentParser:
    """The console script's own parser: the subcommand; each command parses the rest (`command_module(name)`)."""
    from ..core.version import __version__

    parser = argparse.ArgumentParser(prog="hf-condense", description="Progressive dataset condensation.")
    parser.add_argument("--version", action="version", version=f"hf-condense {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help in COMMANDS.items():
        sub.add_parser(name, help=help, add_help=False)
    return parser


def command_module(name: str):
    """The module of one command (imported on use, so `--version` and `--help` stay fast): `main` and
    `build_parser`."""
    import importlib

    return importlib.import_module(f".{name}", __name__)


def main(argv: list[str] | None = None) -> int:
    """The `hf-condense` console script: a subcommand, then that command's own arguments."""
    args, rest = build_parser().parse_known_args(argv)
    return command_module(args.command).main(rest, prog=f"hf-condense {args.command}")


if __name__ == "__main__":
    sys.exit(main())
