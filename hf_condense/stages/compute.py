"""A recipe's `compute:` section: the execution settings (threads, TF32, micro-batching, compilation, vectorisation,
the unroll's memory mode), spelled apart from the method's own knobs so a method's section reads as its paper.

Each such setting is a field of the config that uses it, declared with `opt(..., compute="name")`; a recipe writes it
as `compute.name`, and this module places it in that field before parsing (and back, for the recipe a run folder
keeps). Stage hashes are computed on the fields, so they are the same whichever way a recipe spells a setting. The
earlier spellings (`method.memory`, `evaluation.micro_batch`, top-level `threads`, ...) are still read, with a
one-line note naming the new key.
"""

from __future__ import annotations

import re
from typing import Any

from ..core.config import compute_fields, suggest

SECTION = "compute"
Home = tuple[str | None, str]  # (recipe section, None for the top level; field name)


def homes(sections: list[tuple[str | None, type]]) -> dict[str, Home]:
    """compute key -> the (section, field) that holds it, over the recipe's config classes."""
    return {name: (section, field) for section, cls in sections for field, name in compute_fields(cls).items()}


def spelled(home: Home) -> str:
    section, field = home
    return f"{section}.{field}" if section else field


def place(data: dict, own: dict[str, Home], known: set[str], method: str | None) -> tuple[list[str], list[str]]:
    """Move `data["compute"]` into the fields that hold each setting, and read an earlier spelling as its compute key.
    `own`: this recipe's keys (its method's among them); `known`: every method's, of which one this method lacks is
    left aside with a note (so one compute section can serve several recipes). Returns (notes, errors)."""
    compute = data.pop(SECTION, None)
    if compute is None:
        compute = {}
    if not isinstance(compute, dict):
        return [], [f"{SECTION}: expected a mapping of execution settings, got {compute!r}"]
    notes, errors = [], []
    for name, home in own.items():
        section, field = home
        holder = data if section is None else data.get(section)
        if isinstance(holder, dict) and field in holder:
            value = holder.pop(field)
            if name in compute:
                errors.append(f"{spelled(home)}: set twice, here and as {SECTION}.{name}; keep {SECTION}.{name}")
            else:
                notes.append(f"{spelled(home)} is now {SECTION}.{name}; read as that")
                compute[name] = value
    for name, value in compute.items():
        if name not in own:
            if name in known:  # another method's setting (a table or cluster default): said, and left aside
                notes.append(f"{SECTION}.{name} is not a setting of method {method!r}; left aside")
            else:
                errors.append(f"{SECTION}.{name}: unknown key{suggest(str(name), known)}; allowed: {', '.join(own)}")
            continue
        section, field = own[name]
        if section is None:
            data[field] = value
        else:
            if not isinstance(data.get(section, {}), dict):
                continue  # the section's own error is reported by the parser
            data.setdefault(section, {})[field] = value
    return notes, errors


def public(d: dict[str, Any], own: dict[str, Home]) -> dict[str, Any]:
    """A parsed recipe's dict in the layout a recipe is written in: every execution setting under `compute:`."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in d.items()}
    compute = {}
    for name, (section, field) in own.items():
        holder = out if section is None else out.get(section, {})
        if field in holder:
            compute[name] = holder.pop(field)
    out[SECTION] = compute
    return out


def public_paths(text: str, own: dict[str, Home]) -> str:
    """An error line with every field path of an execution setting spelled as its compute key."""
    for name, (section, field) in own.items():
        if section is None:  # a top-level key is a plain word elsewhere in a line: only as the line's key
            text = re.sub(rf"^{re.escape(field)}(?=:)", f"{SECTION}.{name}", text)
        else:
            text = re.sub(rf"(?<![\w.]){re.escape(section)}\.{re.escape(field)}(?![\w])", f"{SECTION}.{name}", text)
    return text
