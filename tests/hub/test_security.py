"""Nothing hf_condense loads can run code, and a repo cannot point it outside its folder."""

from __future__ import annotations

import ast
from pathlib import Path

import torch
import yaml

import hf_condense
from hf_condense.data.preprocess import Preprocessor
from hf_condense.methods.base import SynSet
from hf_condense.stages.run_folder import configs_entries, read_stage_meta, write_stage

PACKAGE = Path(hf_condense.__file__).parent


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def test_no_unsafe_deserialisation_or_remote_code_in_the_package():
    """Only safetensors and JSON/YAML (safe_load) are read: no torch.load, pickle, unsafe YAML or remote code."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                found += [f"{path.name}: imports {n}" for n in names if n and n.split(".")[0] in ("pickle", "dill")]
        for call in _calls(tree):
            text = ast.unparse(call.func)
            if text in ("torch.load", "yaml.load", "yaml.unsafe_load", "numpy.load", "np.load", "eval", "exec"):
                found.append(f"{path.name}:{call.lineno}: {text}")
            for kw in call.keywords:
                if kw.arg == "trust_remote_code" and not (isinstance(kw.value, ast.Constant) and not kw.value.value):
                    found.append(f"{path.name}:{call.lineno}: trust_remote_code={ast.unparse(kw.value)}")
    assert found == []


def test_replay_reads_only_the_stage_folders_whatever_the_card_says(tmp_path):
    """A repo whose README points a config outside the repo is still read from stage_k/ inside it only."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.parquet").write_text("not for you")
    repo = tmp_path / "repo"
    repo.mkdir()
    pre = Preprocessor.fit(hf_condense.data.PreprocessConfig(), torch.zeros(4, 1, 8, 8, dtype=torch.uint8))
    pre.save(repo / "preprocessing.safetensors")
    write_stage(
        repo,
        1,
        SynSet(torch.zeros(2, 1, 8, 8), torch.tensor([0, 1]), lr=0.01),
        {"ipc": 1, "epochs": 1},
        ["a", "b"],
        pre,
    )
    configs = configs_entries([read_stage_meta(repo / "stage_1")])
    configs[0]["data_files"] = [{"split": "train", "path": "../outside/*.parquet"}]
    (repo / "README.md").write_text("---\n" + yaml.safe_dump({"configs": configs}) + "---\n")
    ps = hf_condense.load_progressive(repo)
    assert [s.number for s in ps.stages] == [1] and torch.equal(ps.synsets()[0].images, torch.zeros(2, 1, 8, 8))
