"""`hf-condense recipes [show NAME | copy NAME PATH]`: the shipped recipes listed from their own headers, one printed,
or one copied where you can edit it. `hf-condense distill NAME` runs a shipped recipe by its name."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from ..core.config import suggest
from ..stages.catalogue import Entry, find, shipped
from . import COMMANDS
from .errors import InputError, guarded


def build_parser(prog: str = "hf-condense recipes") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=COMMANDS["recipes"])
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.add_parser("list", help="every shipped recipe (the default)")
    show = sub.add_parser("show", help="print a shipped recipe")
    show.add_argument("name")
    copy = sub.add_parser("copy", help="copy a shipped recipe to PATH (a file, or a folder to put NAME.yaml in)")
    copy.add_argument("name")
    copy.add_argument("path")
    return parser


def main(argv: list[str] | None = None, prog: str = "hf-condense recipes") -> int:
    args = build_parser(prog).parse_args(argv)

    def body() -> None:
        if args.action in (None, "list"):
            print(table(shipped()))
            return
        source = shipped_path(args.name)
        if args.action == "show":
            print(source.read_text(), end="")
            return
        target = Path(args.path)
        target = target / source.name if target.is_dir() else target
        if target.exists() or target.is_symlink():
            raise InputError(f"{target}: already exists; choose another path (nothing is overwritten)")
        if not target.parent.is_dir():
            raise InputError(f"{target.parent}: no such folder; copy into an existing folder")
        shutil.copyfile(source, target)
        print(f"copied {source.name} to {target}; run it with: hf-condense distill {target}")

    return guarded(body)


def shipped_path(name: str) -> Path:
    """The shipped recipe called `name`, or one line naming the names that exist."""
    path = find(name)
    if path is None:
        names = [e.name for e in shipped()]
        raise InputError(
            f"{name}: no shipped recipe of that name{suggest(name, names)}; `hf-condense recipes` lists them"
        )
    return path


def table(entries: list[Entry]) -> str:
    """One line per recipe: name, method, stages x IPC, the expected figure and the status (both shortened)."""

    def cut(text: str, n: int) -> str:
        return text if len(text) <= n else text[: n - 1] + "…"

    lines = [f"{'name':<28} {'method':<15} {'IPC':<13} {'expected':<44} status"]
    for e in entries:
        ipc = f"{e.stages} x {e.ipc // e.stages}" if e.stages > 1 and e.ipc % e.stages == 0 else str(e.ipc)
        lines.append(f"{e.name:<28} {e.method:<15} {ipc:<13} {cut(e.expected, 44):<44} {cut(e.status, 60)}")
        if e.gpu:
            lines.append(f"{'':<28} GPU: {cut(e.gpu, 100)}")
    lines += [
        "",
        "hf-condense recipes show NAME | copy NAME PATH;  hf-condense distill NAME [key.path=value ...] runs one.",
    ]
    return "\n".join(lines)
