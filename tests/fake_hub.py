"""An in-memory Hub server behind huggingface_hub's HTTP client (its transport swapped), for upload and download tests.

The real `huggingface_hub` client code runs unchanged; only the bytes never leave the process. It answers the
endpoints an upload uses (whoami, repo creation, YAML validation, preupload, commit) for dataset and model repos,
records every commit's files, serves them back to `hf_hub_download` (resolve), and can materialise a repo as a folder
so that the uploaded files are read back with real `load_dataset`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

import yaml
from huggingface_hub import get_session, set_client_factory

httpx = type(get_session()).__module__.split(".")[0]  # the transport package of this huggingface_hub
httpx = __import__(httpx)

TOKENS = {
    "hf_write_token": {"name": "alice", "auth": {"accessToken": {"role": "write"}}},
    "hf_read_token": {"name": "alice", "auth": {"accessToken": {"role": "read"}}},
}


@dataclass
class Commit:
    repo_id: str
    message: str
    files: dict[str, bytes]


@dataclass
class FakeHub:
    commits: list[Commit] = field(default_factory=list)
    repos: dict[str, dict] = field(default_factory=dict)
    fail_commits: int = 0  # refuse this many commits first (507, which the client does not retry)
    fail_downloads: dict[str, int] = field(default_factory=dict)  # file name -> GETs to break off first
    requests: list[tuple[str, str]] = field(default_factory=list)

    def _json(self, status: int, obj) -> object:
        return httpx.Response(status, json=obj)

    def files(self, repo_id: str) -> dict[str, bytes]:
        """The repo's current files (its commits replayed)."""
        out: dict[str, bytes] = {}
        for c in self.commits:
            if c.repo_id == repo_id:
                out.update(c.files)
        return out

    def resolve(self, req, repo_id: str, filename: str):
        """A file download (HEAD for its metadata, then GET), with the headers huggingface_hub's client reads."""
        if repo_id not in self.repos:
            return httpx.Response(
                404, headers={"x-error-code": "RepoNotFound"}, json={"error": "Repository not found"}
            )
        files = self.files(repo_id)
        if filename not in files:
            return httpx.Response(404, headers={"x-error-code": "EntryNotFound"}, json={"error": "Entry not found"})
        data = files[filename]
        if req.method == "GET" and self.fail_downloads.get(filename, 0) > 0:  # the connection drops mid-file
            self.fail_downloads[filename] -= 1
            raise httpx.ReadError("connection reset by peer (fake hub)")
        commit = hashlib.sha1(
            json.dumps(sorted((k, hashlib.sha256(v).hexdigest()) for k, v in files.items())).encode()
        )
        commit = commit.hexdigest()  # like a real commit id: changes with the contents, never reused for others
        etag = '"' + hashlib.sha256(data).hexdigest() + '"'
        headers = {"x-repo-commit": commit, "etag": etag, "content-length": str(len(data))}
        return httpx.Response(200, headers=headers, content=data if req.method == "GET" else b"")

    def handle(self, req):
        path = req.url.path
        self.requests.append((req.method, path))
        token = req.headers.get("authorization", "").removeprefix("Bearer ")
        download = re.match(r"^/(?:datasets/)?([^/]+/[^/]+)/resolve/[^/]+/(.+)$", path)
        if download and req.method in ("HEAD", "GET"):
            return self.resolve(req, download.group(1), unquote(download.group(2)))
        if path == "/api/whoami-v2":
            return self._json(200, TOKENS[token]) if token in TOKENS else self._json(401, {"error": "Invalid token"})
        if token != "hf_write_token":
            return self._json(403, {"error": "write access needed"})
        if path == "/api/repos/create":
            body = json.loads(req.content)
            repo_id = f"{body.get('organization') or TOKENS[token]['name']}/{body['name']}"
            self.repos.setdefault(repo_id, {"private": body.get("private"), "type": body.get("type")})
            return self._json(200, {"url": f"https://huggingface.co/datasets/{repo_id}"})
        if path == "/api/validate-yaml":
            text = json.loads(req.content)["content"]
            try:
                if text.startswith("---"):
                    yaml.safe_load(text.split("---")[1])
            except Exception as e:
                return self._json(400, {"errors": [{"message": str(e)}]})
            return self._json(200, {})
        if "/preupload/" in path:
            files = json.loads(req.content)["files"]
            modes = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]
            return self._json(200, {"files": modes})
        if "/commit/" in path:
            if self.fail_commits:
                self.fail_commits -= 1
                return self._json(507, {"error": "Insufficient storage"})
            repo_id = re.match(r"^/api/(?:datasets|models)/(.+)/commit/", path).group(1)
            lines = [json.loads(line) for line in req.content.decode().splitlines() if line]
            header = next(x["value"] for x in lines if x["key"] == "header")
            files = {x["value"]["path"]: base64.b64decode(x["value"]["content"]) for x in lines if x["key"] == "file"}
            self.commits.append(Commit(repo_id, header["summary"], files))
            oid = f"{len(self.commits):040d}"
            kind = "datasets/" if path.startswith("/api/datasets/") else ""
            return self._json(
                200, {"commitUrl": f"https://huggingface.co/{kind}{repo_id}/commit/{oid}", "commitOid": oid}
            )
        return self._json(404, {"error": f"fake hub: no route for {req.method} {path}"})

    def install(self) -> None:
        set_client_factory(lambda: httpx.Client(transport=httpx.MockTransport(self.handle)))

    def uninstall(self) -> None:
        set_client_factory(lambda: httpx.Client())

    def materialise(self, repo_id: str, folder: Path) -> Path:
        """The repo's current files (all commits replayed) as a local folder."""
        for p, data in self.files(repo_id).items():
            (folder / p).parent.mkdir(parents=True, exist_ok=True)
            (folder / p).write_bytes(data)
        return folder
