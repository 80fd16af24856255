"""Upload a distilled folder to a Hub dataset repo, stage by stage (`hf-condense push <folder> <repo_id>`).

Access is checked before any compute (a missing, invalid or read-only token is refused at once). Each stage is one
commit of its own files plus the card; a failed upload leaves the local folder complete and prints the command that
retries the upload alone, which also serves folders made earlier.
"""

from __future__ import annotations

import logging
from fnmatch import fnmatch
from pathlib import Path

import yaml
from huggingface_hub import CommitOperationAdd, HfApi, constants
from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError

from ..core.config import RecipeError
from ..stages.recipe import public_recipe, repo_id_errors
from ..stages.run_folder import FINAL_FILES, RECIPE, TOP_FILES, list_stages, stage_name, stage_patterns

logger = logging.getLogger(__name__)


class HubUnreachable(ConnectionError):
    """The Hub endpoint could not be reached (no network, a proxy, a wrong HF_ENDPOINT): the network, not the input;
    exits as an upload failure does (1), with the command to retry."""


class UploadFailed(RuntimeError):
    """An upload that did not complete: nothing local changed, and the message says how to retry (exit 1)."""


def _can_write(info: dict, namespace: str) -> bool:
    token = info.get("auth", {}).get("accessToken", {})
    role = token.get("role")
    if role == "write":
        return True
    if role != "fineGrained":
        return False
    scopes = token.get("fineGrained", {}).get("scoped", [])
    for scope in scopes:
        if scope.get("entity", {}).get("name") == namespace and "repo.write" in scope.get("permissions", []):
            return True
    return False


def check_access(repo_id: str, token: str | None = None, retry: str = "rerun the same command") -> str:
    """The full repo id (namespace/name) if the token may write there; otherwise a RecipeError saying why, or
    HubUnreachable naming the endpoint, the repo and `retry` (what to run once the network is back)."""
    errors = repo_id_errors(repo_id)
    if errors:
        raise RecipeError(errors)
    api = HfApi(token=token)
    try:
        info = api.whoami()
    except LocalTokenNotFoundError:
        raise RecipeError(
            ["output.push_to_hub: no Hugging Face token found; run `hf auth login` or set HF_TOKEN (write access)"]
        ) from None
    except HfHubHTTPError as e:
        status = e.response.status_code if e.response is not None else None
        why = "the Hugging Face token is invalid or expired" if status == 401 else f"the Hub refused ({status})"
        raise RecipeError([f"output.push_to_hub: {why}; log in again with `hf auth login`"]) from None
    except Exception as e:  # no network (the transport's connection errors), proxies, ...
        raise HubUnreachable(
            f"cannot reach the Hub at {constants.ENDPOINT} to check write access to {repo_id!r} "
            f"({type(e).__name__}); check the network (or HF_ENDPOINT), then {retry}"
        ) from None
    namespace = repo_id.split("/")[0] if "/" in repo_id else info["name"]
    full = repo_id if "/" in repo_id else f"{namespace}/{repo_id}"
    if not _can_write(info, namespace):
        raise RecipeError(
            [f"output.push_to_hub: the token of {info.get('name')!r} cannot write to {namespace!r}; use a write token"]
        )
    return full


class Pusher:
    """Uploads a folder's stages to one dataset repo as they finish; after a failure it stops and says how to retry."""

    def __init__(self, folder: str | Path, repo_id: str, private: bool = False, token: str | None = None):
        self.folder = Path(folder)
        self.repo_id = repo_id
        self.private = private
        self.api = HfApi(token=token)
        self.failed: str | None = None
        self._created = False

    def retry_command(self) -> str:
        return f"python -m hf_condense.push {self.folder} {self.repo_id}" + (" --private" if self.private else "")

    def _commit(self, patterns: list[str], message: str) -> None:
        if not self._created:
            self.api.create_repo(self.repo_id, repo_type="dataset", private=self.private, exist_ok=True)
            self._created = True
        self.api.create_commit(
            repo_id=self.repo_id, repo_type="dataset", operations=self.operations(patterns), commit_message=message
        )

    def operations(self, patterns: list[str]) -> list[CommitOperationAdd]:
        """The folder's files that match `patterns`; recipe.yaml in its public form (no local paths)."""
        ops = []
        for path in sorted(p for p in self.folder.rglob("*") if p.is_file()):
            rel = path.relative_to(self.folder).as_posix()
            if not any(fnmatch(rel, pat) for pat in patterns):
                continue
            if rel == RECIPE:
                public = yaml.safe_dump(public_recipe(yaml.safe_load(path.read_text())), sort_keys=False)
                ops.append(CommitOperationAdd(rel, public.encode()))
            else:
                ops.append(CommitOperationAdd(rel, str(path)))
        return ops

    def _safe_commit(self, patterns: list[str], message: str) -> bool:
        if self.failed:
            return False
        try:
            self._commit(patterns, message)
        except Exception as e:  # any upload failure: the folder stays complete, the user retries alone
            self.failed = f"{type(e).__name__}: {e}"
            logger.warning(
                f"upload to {self.repo_id} failed ({self.failed}); the local folder {self.folder} is complete. "
                f"Retry the upload alone with: {self.retry_command()}"
            )
            return False
        return True

    def push_stage(self, k: int, rewritten: bool = False) -> bool:
        """Stage k's files with the card; `rewritten` (boosting moved earlier stages) sends every stage."""
        stages = list_stages(self.folder) if rewritten else [k]
        patterns = TOP_FILES + [p for j in stages for p in stage_patterns(j)]
        return self._safe_commit(patterns, f"Add {stage_name(k)}")

    def push_final(self) -> bool:
        """Results, figures and the final card."""
        return self._safe_commit(FINAL_FILES, "Add results, figures and the final card")

    def push_all(self) -> None:
        """Every stage and file of the folder in one commit (raises on failure)."""
        patterns = FINAL_FILES + [p for k in list_stages(self.folder) for p in stage_patterns(k)]
        self._commit(patterns, f"Upload {len(list_stages(self.folder))} stage(s) with hf_condense")
