"""The shipped recipes as a catalogue (`hf-condense recipes`): each one's title, expected figure and status read from
its own comment header, so the list cannot drift from the files. A shipped recipe is found by its name (with or
without .yaml) wherever the package is installed; in a clone, `recipes/` at the top level is the same folder."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

FIELDS = ("Run", "Expected", "Status", "GPU")  # the header's labelled lines, each possibly continued on indented lines


def recipes_dir() -> Path:
    """The folder of shipped recipes inside the installed package."""
    return Path(str(resources.files("hf_condense") / "recipes"))


@dataclass
class Entry:
    """One shipped recipe as the catalogue lists it."""

    name: str
    path: Path
    title: str  # the header's first line: the method, dataset, IPC and the paper row it follows
    expected: str
    status: str
    gpu: str  # expected time and memory on a GPU where known, marked measured or estimated ("" when unknown)
    method: str  # with its multi-stage scheme, e.g. "pdd + mtt"
    stages: int
    ipc: int  # in total, over the stages

    @classmethod
    def read(cls, path: Path) -> Entry:
        text = path.read_text()
        header = header_fields(text)
        body = yaml.safe_load(text)
        st = body.get("stages", {})
        count, ipc = st.get("count", 1), st.get("ipc", 1)
        total = sum(ipc) if isinstance(ipc, list) else count * ipc
        method = f"{st['scheme']} + {body['method']['name']}" if st.get("scheme") else body["method"]["name"]
        expected, status, gpu = (header.get(k, "") for k in ("Expected", "Status", "GPU"))
        return cls(path.stem, path, header["title"], expected, status, gpu, method, count, total)


def header_fields(text: str) -> dict[str, str]:
    """The comment header's first line (`title`) and its `# Label: ...` lines (FIELDS), each with the indented
    comment lines that continue it."""
    out: dict[str, str] = {}
    current = None
    for raw in text.splitlines():
        if not raw.startswith("#"):
            break  # the header ends where the YAML starts
        body = raw[1:]
        if "title" not in out:
            out["title"] = body.strip()
            continue
        label, sep, rest = body.strip().partition(":")
        if sep and label in FIELDS and not body.startswith("  "):
            current, out[label] = label, rest.strip()
        elif current and body.startswith("  "):
            out[current] += " " + body.strip()
        else:
            current = None
    return out


def shipped() -> list[Entry]:
    """Every shipped recipe, by name."""
    return [Entry.read(p) for p in sorted(recipes_dir().glob("*.yaml"))]


def find(name: str) -> Path | None:
    """The shipped recipe called `name` (or `name`.yaml), None if there is none."""
    if "/" in name or "\\" in name:
        return None
    path = recipes_dir() / (name if name.endswith(".yaml") else f"{name}.yaml")
    return path if path.is_file() else None
