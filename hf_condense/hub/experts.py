"""Expert trajectories shared as Hub model repos: built once, pushed, reused by any recipe whose experts they are.

Layout of a repo (`hf-condense experts push RECIPE REPO_ID`): `experts/expert_0000/snapshots_0000-0009.safetensors`,
... (each expert's snapshots in files of ten, parameter names and shapes in the metadata), `experts.json` (the
manifest: what shaped them, how many epochs, each file's sha256) and a model card. A recipe names one with
`method.experts` (`org/name`, `org/name@revision`, or a local folder in the same layout); before distilling, the run
reads the manifest, refuses a repo made with other settings (naming the first that differs), downloads only the
experts it uses (and of each only the files of the epochs it uses), verifies each against the manifest and places it
in its expert cache, where the methods find it as if built here. Experts it needs beyond the repo's (more of them, or
more epochs) are built here, and it says so.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import torch
from huggingface_hub import CommitOperationAdd, HfApi, ModelCard, ModelCardData, constants, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HFValidationError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from ..core.config import RecipeError
from ..core.io import checksum, file_sha256, load_verified, write_text
from ..methods.experts import ExpertSettings, ExpertStore, load_trajectory, save_trajectory
from ..methods.mtt import expert_settings
from .push import HubUnreachable

MANIFEST, FORMAT = "experts.json", "hf_condense.experts.v1"
SHARD_SNAPSHOTS = 10  # snapshots per file: a run downloads the first ceil((epochs + 1) / 10) files of an expert
LOCAL_EXPERTS = "HF_CONDENSE_EXPERTS"  # folder of local copies of expert repos, one per repo name (offline use)
KEY = "method.experts"


def normalised(obj):
    """`obj` as JSON reads it back (tuples as lists, objects as strings): how a manifest stores and compares it."""
    return json.loads(json.dumps(obj, default=str))


def write_repo(folder: Path, store: ExpertStore, settings: ExpertSettings, key: str, paths: list[Path], source: dict):
    """Lay the experts `paths` (built under `key`) out as a repo in `folder`: each expert's snapshots in shards of
    SHARD_SNAPSHOTS (a run downloads only the epochs it uses), and the manifest of their settings, the dataset they
    came from and each shard's sha256. Returns the manifest (the cache is only read)."""
    experts = []
    for e, path in enumerate(paths):
        traj = load_trajectory(path, key, settings.epochs, store.flat.size)
        if traj is None:
            raise RecipeError([f"{KEY}: {path} changed while it was being shared; rerun the command"])
        shards = []
        for first in range(0, len(traj), SHARD_SNAPSHOTS):
            part = traj[first : first + SHARD_SNAPSHOTS]
            name = f"experts/expert_{e:04d}/snapshots_{first:04d}-{first + len(part) - 1:04d}.safetensors"
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            save_trajectory(folder / name, part, store.flat, key, {"first_snapshot": first})
            shards.append({"file": name, "first": first, "snapshots": len(part), "sha256": file_sha256(folder / name)})
        experts.append({"shards": shards})
    info = {
        "format": FORMAT,
        "key": key,
        "dataset": {k: source.get(k) for k in ("path", "name", "revision", "fingerprint", "num_train")},
        "classes": list(store.ctx.data.class_names),
        "preprocessing_sha256": checksum(store.ctx.preprocessor.state_dict()),  # its fitted state (ZCA), recorded
        "epochs": settings.epochs,
        "settings": normalised(store.base_settings(settings)),
        "experts": experts,
    }
    write_text(folder / MANIFEST, json.dumps(info, indent=1) + "\n")
    return info


def card(info: dict, repo_id: str, recipe_text: str) -> str:
    """The model card of an expert repo, from experts_card_template.md."""
    s, data = info["settings"], info["dataset"]
    path = data["path"]
    template = resources.files("hf_condense") / "templates" / "experts_card_template.md"
    card_data = ModelCardData(
        library_name="hf_condense",
        tags=["dataset-distillation", "hf-condense", "expert-trajectories"],
        datasets=[path] if path and "/" in path and not Path(path).is_dir() else None,
    )
    return str(
        ModelCard.from_template(
            card_data,
            template_path=str(template),
            repo_id=repo_id,
            dataset=path,
            dataset_url=f"https://huggingface.co/datasets/{path}" if card_data.datasets else None,
            revision=data.get("revision") or "main",
            num_experts=len(info["experts"]),
            epochs=info["epochs"],
            model=s["model"],
            preprocess=s["data"]["preprocess"],
            training={k: s.get(k) for k in ("lr", "batch", "aug", "seed", "optimizer", "curriculum") if k in s},
            key=info["key"],
            recipe_yaml=recipe_text.strip(),
        )
    )


def upload(folder: Path, repo_id: str, private: bool, token: str | None = None) -> None:
    """The prepared repo folder as one commit of a model repo (one commit: a reader never sees half of it)."""
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    ops = [
        CommitOperationAdd(p.relative_to(folder).as_posix(), str(p)) for p in sorted(folder.rglob("*")) if p.is_file()
    ]
    api.create_commit(repo_id, ops, commit_message="Add expert trajectories (hf_condense)", repo_type="model")


# Reading shared experts -----------------------------------------------------------------------------------------


def local_folder(source: str) -> Path | None:
    """A folder serving `source`: the source itself, or `$HF_CONDENSE_EXPERTS/name` for a repo id `org/name`."""
    if Path(source).is_dir():
        return Path(source)
    root = os.environ.get(LOCAL_EXPERTS)
    repo = source.split("@")[0]
    if root and repo.count("/") == 1 and (Path(root).expanduser() / repo.split("/")[1]).is_dir():
        return Path(root).expanduser() / repo.split("/")[1]
    return None


def opener(source: str) -> tuple[Callable[[str], Path], str]:
    """(file name -> local path, how the source is reached) for a folder, a mapped copy or a Hub repo."""
    folder = local_folder(source)
    if folder is not None:

        def local(name: str) -> Path:
            path = folder / name
            if not path.is_file():
                raise RecipeError(
                    [f"{KEY}: {source!r} has no {name} (expected the layout of `hf-condense experts push`)"]
                )
            return path

        return local, f"the local folder {folder}"
    repo, _, revision = source.partition("@")

    def hub(name: str) -> Path:
        try:
            return Path(hf_hub_download(repo, name, revision=revision or None, repo_type="model"))
        except HFValidationError as e:
            raise RecipeError([f"{KEY}: {source!r} is neither a folder nor a Hub repo id ({e})"]) from None
        except RepositoryNotFoundError:
            raise RecipeError(
                [f"{KEY}: no model repo {repo!r} on the Hub, or it is private and the token has no access to it"]
            ) from None
        except RevisionNotFoundError:
            raise RecipeError([f"{KEY}: {repo!r} has no revision {revision!r}"]) from None
        except LocalEntryNotFoundError:
            raise RecipeError(
                [
                    f"{KEY}: {name} of {source!r} is not in the local Hugging Face cache and the Hub cannot be "
                    f"reached; connect once, or map the repo to a local copy with {LOCAL_EXPERTS}=<folder of copies>"
                ]
            ) from None
        except EntryNotFoundError:
            raise RecipeError(
                [f"{KEY}: {source!r} has no {name} (expected the layout of `hf-condense experts push`)"]
            ) from None
        except Exception as e:  # the connection broke off, a server error: nothing half-downloaded is used
            raise HubUnreachable(
                f"download of {name} from {repo!r} failed ({type(e).__name__}: {e}); the files already verified are "
                "kept: rerun the same command to resume"
            ) from None

    how = "the local Hugging Face cache (offline)" if constants.HF_HUB_OFFLINE else "the Hub"
    return hub, how


def read_manifest(source: str, fetch: Callable[[str], Path]) -> dict:
    path = fetch(MANIFEST)
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise RecipeError([f"{KEY}: {MANIFEST} of {source!r} is malformed ({type(e).__name__}: {e})"]) from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        found = info.get("format") if isinstance(info, dict) else type(info).__name__
        raise RecipeError([f"{KEY}: {MANIFEST} of {source!r} is format {found!r}; this hf_condense reads {FORMAT!r}"])
    missing = [k for k in ("key", "settings", "epochs", "experts") if k not in info]
    shard = {"file", "first", "sha256"}
    if not missing and not all(
        isinstance(e, dict) and isinstance(e.get("shards"), list) and all(shard <= set(x) for x in e["shards"])
        for e in info["experts"]
    ):
        missing = ["shards (file, first, sha256) for every expert"]
    if missing:
        raise RecipeError([f"{KEY}: {MANIFEST} of {source!r} is malformed (no {', '.join(missing)})"])
    return info


def first_difference(theirs: dict, ours: dict, where: str = "") -> str | None:
    """The first setting (in `ours`' order, nested with dots) whose value differs, as 'name (repo: x, recipe: y)'."""
    for name, mine in ours.items():
        other = theirs.get(name)
        if isinstance(mine, dict) and isinstance(other, dict):
            found = first_difference(other, mine, f"{where}{name}.")
            if found:
                return found
        elif other != mine:
            return f"{where}{name} (repo: {other!r}, recipe: {mine!r})"
    extra = [k for k in theirs if k not in ours]
    return f"{where}{extra[0]} (repo: {theirs[extra[0]]!r}, recipe: none)" if extra else None


def place_shared(store: ExpertStore, settings: ExpertSettings, source: str) -> str:
    """Put the experts of `source` that `settings` uses into the store's cache, each verified against the manifest;
    returns the line that says what came from where. Refuses (RecipeError) a repo made for other settings, a damaged
    file or a malformed manifest, before any distillation."""
    fetch, how = opener(source)
    info = read_manifest(source, fetch)
    key = store.base_key(settings)
    if info["key"] != key:
        why = first_difference(info["settings"], normalised(store.base_settings(settings))) or "the content key"
        raise RecipeError([f"{KEY}: {source!r} holds experts made with other settings: {why}"])
    wanted = settings.num_experts
    if info["epochs"] < settings.epochs:
        return (
            f"experts: {source!r} stores {info['epochs']} epoch(s) per expert; this recipe needs {settings.epochs}: "
            f"all {wanted} expert(s) are built here"
        )
    shared, needed = info["experts"][:wanted], settings.epochs + 1
    for e, entry in enumerate(shared):
        dest = store.expert_path(key, e)
        if load_trajectory(dest, key, settings.epochs, store.flat.size) is not None:
            continue  # already placed by an earlier run
        parts = []
        for shard in (s for s in entry["shards"] if s["first"] < needed):  # only the epochs this recipe uses
            path = fetch(shard["file"])
            loaded = load_verified(path, key, "shared expert") if file_sha256(path) == shard["sha256"] else None
            if loaded is None:
                raise RecipeError(
                    [
                        f"{KEY}: {shard['file']} of {source!r} does not match its sha256 in {MANIFEST} (damaged or "
                        "altered); it was not used"
                    ]
                )
            parts.append(loaded[0]["trajectory"])
        save_trajectory(dest, torch.cat(parts)[:needed], store.flat, key)
    built = wanted - len(shared)
    return f"experts: {len(shared)} of {wanted} from {source} via {how} (verified)" + (
        f"; {built} more built here (the repo has {len(info['experts'])})" if built else ""
    )


def use_shared_experts(ctx, recipe) -> None:
    """Before distilling: place the shared experts (`method.experts`) of every stage's base expert settings in the
    cache (the main process; the others wait), saying what came from where."""
    source = getattr(recipe.method, "experts", None)
    if not source:
        return
    store, seen = ExpertStore(ctx), set()
    with ctx.accelerator.main_process_first():
        for k in range(1, recipe.stages.count + 1):
            settings = expert_settings(recipe.stage_method(k), recipe.seed)
            key = store.base_key(settings)
            if key in seen or not ctx.accelerator.is_main_process:
                continue
            seen.add(key)
            ctx.print(place_shared(store, settings, source))
