"""The one error boundary of every entry point: an anticipated failure becomes one line on stderr and an exit code.

    0 done   1 upload failed (or the Hub unreachable)   2 bad input (recipe, data, folder)   3 diverged or damaged
    stage   4 out of space
    130 interrupted (Ctrl-C)   143 terminated (SIGTERM: preemption, `timeout`, a launcher stopping its child)

`HF_CONDENSE_DEBUG=1` re-raises instead, with the traceback.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from collections.abc import Callable

from ..core.config import RecipeError
from ..core.interrupts import Terminated, interrupts_raise
from ..hub.push import HubUnreachable
from ..methods import DivergenceError
from ..stages.recipe import load_recipe
from ..stages.run_folder import FolderLockedError, StageDataError

EXIT_UPLOAD_FAILED, EXIT_BAD_INPUT, EXIT_DIVERGED, EXIT_NO_SPACE = 1, 2, 3, 4
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143


class InputError(Exception):
    """Bad input of a command line (a missing folder, a bad argument): its message is the one line shown."""


def guarded(body: Callable[[], object]) -> int:
    """Run `body()`; map anticipated failures to one line and an exit code (0 when it returns)."""
    try:
        with interrupts_raise():
            body()
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
    if isinstance(e, HubUnreachable):
        return EXIT_UPLOAD_FAILED
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
        return EXIT_NO_SPACE
    return None


def no_space(e: OSError) -> str:
    return (
        f"error: no space left on the device while writing {e.filename or 'a file'}; every finished unit is kept: "
        "free some space and rerun the same command to resume"
    )


def command(prog: str, description: str, body: Callable, argv: list[str] | None = None) -> int:
    """A recipe command line: a recipe path plus `key.path=value` overrides, run through the error boundary."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("recipe", help="recipe YAML file")
    parser.add_argument(
        "overrides", nargs="*", default=[], help="key.path=value overrides, e.g. method.iterations=200"
    )
    args = parser.parse_args(argv)
    return guarded(lambda: body(load_recipe(args.recipe, args.overrides)))
