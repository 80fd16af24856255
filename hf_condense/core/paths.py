"""What a path is, said in one line: a file where a folder is expected (or the reverse), nothing there, or a folder
that cannot be made or written. Every command and recipe check that reads or writes a user's path asks here."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .io import TMP_PREFIX


def kind(path: str | Path) -> str:
    """'a folder', 'a file', 'nothing' or 'not a regular file or folder' (a socket, a device, a broken link)."""
    p = Path(path).expanduser()
    if p.is_dir():
        return "a folder"
    if p.is_file():
        return "a file"
    return "nothing" if not os.path.lexists(p) else "not a regular file or folder"


def expect_file(path: str | Path, what: str) -> str | None:
    """Why `path` is not the file expected (None: it is one); `what` says what was expected, e.g. 'a recipe YAML
    file'."""
    found = kind(path)
    if found == "a file":
        return None
    return f"{path}: no such file; expected {what}" if found == "nothing" else f"{path}: is {found}; expected {what}"


def expect_folder(path: str | Path, what: str) -> str | None:
    """Why `path` is not the folder expected (None: it is one)."""
    found = kind(path)
    if found == "a folder":
        return None
    return f"{path}: no such folder; expected {what}" if found == "nothing" else f"{path}: is {found}; expected {what}"


def unwritable(path: str | Path, key: str) -> str | None:
    """Why folder `path` (named by recipe key or variable `key`) cannot be made or written: a file in its place or on
    its way, or a read-only or virtual file system. None: it can be (it is not made here)."""
    target = Path(path).expanduser().absolute()
    if target.exists() and not target.is_dir():
        return f"{key}: {str(path)!r} is {kind(target)}; give a folder path"
    where = target
    while not where.exists():
        where = where.parent
    if not where.is_dir():
        return f"{key}: {str(path)!r} cannot be made: {where} is {kind(where)}"
    try:
        os.rmdir(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=where))
    except OSError as e:
        return f"{key}: {str(path)!r} cannot be written ({where}: {e.strerror or e})"
    return None
