"""Crash-safe files: everything is written to a temporary name of our own in the same folder, then renamed; cache
files carry their content key and checksum so that a damaged or stale one is never used."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

logger = logging.getLogger(__name__)


# The names of hf_condense's own temporary files: recovery touches these and nothing else in a folder.
TMP_PREFIX, OLD_PREFIX = ".hf_condense-tmp-", ".hf_condense-old-"


def is_own_temporary(name: str) -> bool:
    """Whether `name` is one of the temporary names `atomic_path` creates."""
    return name.startswith((TMP_PREFIX, OLD_PREFIX))


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` (a file or a folder) in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{path.name}.", dir=path.parent)) / path.name
    try:
        yield tmp
        if path.is_dir() and tmp.is_dir():
            old = path.with_name(f"{OLD_PREFIX}{path.name}")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)


def recover_interrupted_writes(folder: str | Path) -> list[str]:
    """Undo what a process killed inside `atomic_path` left in `folder`: drop its temporary folders, and put back a
    replaced folder whose new version never arrived. Returns what it did, one line each."""
    folder, done = Path(folder), []
    for tmp in folder.glob(f"{TMP_PREFIX}*"):
        shutil.rmtree(tmp, ignore_errors=True)
        done.append(f"removed {tmp.name} (an interrupted write)")
    for old in folder.glob(f"{OLD_PREFIX}*"):
        target = old.with_name(old.name[len(OLD_PREFIX) :])
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(old, target)
            done.append(f"restored {target.name} (its replacement was interrupted)")
    return done


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def save_safetensors(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None):
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        try:
            save_file(tensors, str(tmp), metadata=metadata)
        except SafetensorError as e:  # its I/O errors bypass OSError: a full disk must still read as one
            if "No space left" in str(e):
                raise OSError(errno.ENOSPC, "No space left on device", str(path)) from None
            raise


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def content_key(obj) -> str:
    """A short stable hash of a JSON-able object (cache keys)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def checksum(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 of the tensors' bytes, in key order."""
    h = hashlib.sha256()
    for k in sorted(tensors):
        h.update(tensors[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def save_verified(tensors: dict[str, torch.Tensor], path: str | Path, key: str, metadata: dict | None = None) -> None:
    """A cache file that carries its content key and checksum, so that `load_verified` can tell it is sound."""
    save_safetensors(tensors, path, metadata={**(metadata or {}), "key": key, "sha256": checksum(tensors)})


def load_verified(path: str | Path, key: str, what: str) -> tuple[dict[str, torch.Tensor], dict] | None:
    """Tensors and metadata of a `save_verified` file, or None when it is missing, unreadable (truncated),
    made under another key (stale or foreign) or altered (checksum); each refusal is logged with the file and why."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k).clone() for k in f.keys()}  # not backed by the file (mmap)
    except Exception as e:  # a truncated or garbled file: safetensors raises several kinds
        logger.warning(f"{what} cache file {path} is unreadable ({type(e).__name__}: {e}); rebuilding it")
        return None
    why = None
    if meta.get("key") != key:
        why = "it was made for other settings"
    elif meta.get("sha256") != checksum(tensors):
        why = "its checksum does not match its contents"
    if why:
        logger.warning(f"{what} cache file {path} is not used: {why}; rebuilding it")
        return None
    return tensors, meta
