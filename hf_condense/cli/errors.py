"""The one error boundary of every entry point: an anticipated failure becomes one line on stderr and an exit code
(EXIT_CODES says which). `HF_CONDENSE_DEBUG=1` re-raises instead, with the traceback.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from collections.abc import Callable

from ..core.config import RecipeError
from ..core.interrupts import Terminated, interrupts_raise
from ..hub.push import HubUnreachable, UploadFailed
from ..methods import DivergenceError
from ..stages.recipe import load_recipe, recipe_sections
from ..stages.run_folder import FolderLockedError, StageDataError

EXIT_UPLOAD_FAILED, EXIT_BAD_INPUT, EXIT_DIVERGED, EXIT_NO_SPACE = 1, 2, 3, 4
EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_BROKEN_PIPE = 130, 143, 141
EXIT_CODES = {  # what each exit code of every command means (docs/reference/exit-codes.md is generated from it)
    0: "done",
    EXIT_UPLOAD_FAILED: "an upload failed or the Hub is unreachable: the line names the endpoint and the command that "
    "retries; the folder is kept",
    EXIT_BAD_INPUT: "bad input: a recipe key, a data column, a path, a folder another recipe made or another process "
    "holds; the line names it and says what is expected",
    EXIT_DIVERGED: "a stage diverged (non-finite loss or step size), or a stored stage is missing or altered",
    EXIT_NO_SPACE: "out of space on the device; every finished unit is kept, free some space and rerun",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C): the stage in progress saved its iteration; rerun the same command",
    EXIT_TERMINATED: "terminated by SIGTERM (preemption, `timeout`, a launcher stopping its child): as for 130",
    EXIT_BROKEN_PIPE: "the output's reader went away (`hf-condense recipes | head`): stopped quietly, as for 130",
}


class InputError(Exception):
    """Bad input of a command line (a missing folder, a bad argument): its message is the one line shown."""


def guarded(body: Callable[[], object]) -> int:
    """Run `body()`; map anticipated failures to one line and an exit code (0 when it returns)."""
    try:
        with interrupts_raise():
            body()
    except BrokenPipeError:  # the reader went away (`hf-condense recipes | head`): stop quietly, as `cat` does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return EXIT_BROKEN_PIPE
    except Exception as e:
        if os.environ.get("HF_CONDENSE_DEBUG") == "1":
            raise
        code = exit_code(e)
        if code is None:
            raise
        print(no_space(e) if code == EXIT_NO_SPACE else f"error: {e}", file=sys.stderr)
        return code
    except KeyboardInterrupt as e:
        if os.environ.get("HF_CONDENSE_DEBUG") == "1":
            raise
        terminated = isinstance(e, Terminated)
        print(
            f"{'terminated (SIGTERM)' if terminated else 'interrupted'}: every finished stage and expert is kept, and "
            "a stage's images at the iteration it reached; rerun the same command to resume",
            file=sys.stderr,
        )
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    return 0


def exit_code(e: Exception) -> int | None:
    """The exit code of an anticipated failure (None: not anticipated, a bug to show in full)."""
    if isinstance(e, RecipeError | FolderLockedError | InputError):
        return EXIT_BAD_INPUT
    if isinstance(e, DivergenceError | StageDataError):
        return EXIT_DIVERGED
    if isinstance(e, HubUnreachable | UploadFailed):
        return EXIT_UPLOAD_FAILED
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
        return EXIT_NO_SPACE
    return None


def no_space(e: OSError) -> str:
    return (
        f"error: no space left on the device while writing {e.filename or 'a file'}; every finished unit is kept: "
        "free some space and rerun the same command to resume"
    )


def recipe_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The command line of a recipe command: a recipe (a path or a shipped name) plus `key.path=value` overrides."""
    sections = "\n".join(f"  {key + ':':<12}{text}" for key, text in recipe_sections())
    epilog = (
        "A recipe is a YAML mapping of these sections; a key left out takes its default (every key, its type,\n"
        f"default and meaning: docs/reference/recipe.md; shipped recipes: `hf-condense recipes`):\n{sections}"
    )
    parser = argparse.ArgumentParser(
        prog=prog, description=description, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("recipe", help="recipe YAML file, or the name of a shipped recipe (`hf-condense recipes`)")
    parser.add_argument(
        "overrides", nargs="*", default=[], help="key.path=value overrides, e.g. method.iterations=200"
    )
    return parser


def command(parser: argparse.ArgumentParser, body: Callable, argv: list[str] | None = None) -> int:
    """Run a recipe command (`recipe_parser`) through the error boundary."""
    args = parser.parse_args(argv)
    return guarded(lambda: body(load_recipe(args.recipe, args.overrides)))
