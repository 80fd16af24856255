"""`hf-condense push <folder> <repo_id> [--private]` (also `python -m hf_condense.push ...`): upload a finished
folder, every stage and file in one commit; access is checked first."""

from __future__ import annotations

import argparse
import sys

from ..core.config import RecipeError
from ..core.paths import expect_folder
from ..hub.push import HubUnreachable, Pusher, check_access
from ..stages.run_folder import RunFolder, StageDataError
from . import COMMANDS
from .errors import InputError, exit_code


def build_parser(prog: str = "hf-condense push") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=COMMANDS["push"])
    parser.add_argument("folder", help="a folder written by hf_condense.distill")
    parser.add_argument("repo_id", help="Hub dataset repo, e.g. my-org/cifar10-pdd")
    parser.add_argument("--private", action="store_true", help="create the repo as private")
    return parser


def main(argv: list[str] | None = None, prog: str = "hf-condense push") -> int:
    args = build_parser(prog).parse_args(argv)
    folder = RunFolder(args.folder)
    try:
        why = expect_folder(args.folder, "a folder written by hf_condense.distill")
        if why:
            raise InputError(why)
        if not folder.stages() or not folder.card.is_file():
            raise InputError(
                f"{args.folder}: no stage_k folders and README.md; expected a folder written by hf_condense.distill"
            )
        folder.verify_stages()  # a missing or altered stage is never uploaded
        retry = f"retry: hf-condense push {args.folder} {args.repo_id}" + (" --private" if args.private else "")
        repo_id = check_access(args.repo_id, retry=retry)
        Pusher(folder.path, repo_id, private=args.private).push_all()
    except (RecipeError, InputError, StageDataError, HubUnreachable) as e:
        print(f"error: {e}", file=sys.stderr)
        return exit_code(e)
    except Exception as e:  # any upload failure: one line, the folder untouched
        print(f"error: upload of {folder.path} to {args.repo_id} failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(f"uploaded {folder.path} to https://huggingface.co/datasets/{repo_id}")
    return 0
