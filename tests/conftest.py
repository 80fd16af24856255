"""Shared fixtures: tiny recipes on scikit-learn's digits, an isolated cache, one accelerator."""

from __future__ import annotations

import copy
import os
from pathlib import Path

# As CI runs them: no Hub, so a test that would reach it fails at once instead of after the client's retries.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# Under pytest-xdist every worker shares the cores: each takes its share of threads (in-process runs and the
# processes a test starts alike), so two workers on two cores do not fight over four threads.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    os.environ.setdefault("HF_CONDENSE_THREADS", str(max(1, len(os.sched_getaffinity(0)) // _WORKERS)))

import pytest  # noqa: E402
import torch  # noqa: E402

if _WORKERS > 1:
    torch.set_num_threads(int(os.environ["HF_CONDENSE_THREADS"]))

ROOT = Path(__file__).resolve().parents[1]
FASHION = ROOT.parent / "shared" / "datasets" / "fashion_mnist"

TINY = {
    "dataset": {"path": "sklearn/digits"},
    "model": {"name": "convnet_d2w16"},
    "augment": {"strategy": "color_crop_cutout_scale_rotate"},
    "method": {"name": "random"},
    "stages": {"count": 2, "ipc": 2},
    "evaluation": {"runs": 2, "epochs": 40, "random_real": False},
    "seed": 0,
}


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_CONDENSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)
    yield


@pytest.fixture
def fresh_compile(monkeypatch):
    """No compile failure recorded, and no compiled graph reused from another test (in memory or on disk)."""
    import torch._inductor.config as inductor

    from hf_condense.models import compiling

    monkeypatch.setattr(compiling, "_failed", [])
    # torch's config modules serve their keys through __getattr__, which monkeypatch.setattr cannot restore under
    # every pytest; their own patch() context sets and restores a key.
    with inductor.patch(fx_graph_cache=False):
        torch._dynamo.reset()
        yield
        torch._dynamo.reset()


def no_cxx():
    """A real compile failure: inductor's C++ compiler set to a path that does not exist, for the `with` block.
    Through the config's own patch(): monkeypatch cannot reach the keys its sub-configs serve (pytest 9.2)."""
    import torch._inductor.config as inductor

    return inductor.patch({"cpp.cxx": ("/nonexistent/c++",)})


@pytest.fixture
def tiny(tmp_path):
    """A fresh copy of a tiny recipe dict writing into tmp_path/out."""
    d = copy.deepcopy(TINY)
    d["output"] = {"dir": str(tmp_path / "out")}
    return d


@pytest.fixture(scope="session")
def accelerator():
    from accelerate import Accelerator

    return Accelerator(cpu=True)


@pytest.fixture(scope="session")
def digits():
    from hf_condense.data.sources import load_real_data
    from hf_condense.stages.recipe import DatasetConfig

    return load_real_data(DatasetConfig(path="sklearn/digits"))


def tiny_mtt(**method) -> dict:
    """Method section of a tiny MTT run on digits (seconds on a CPU)."""
    base = {
        "name": "mtt",
        "iterations": 30,
        "syn_steps": 6,
        "expert_epochs": 1,
        "max_start_epoch": 2,
        "lr_img": 100.0,
        "lr_lr": 1e-5,
        "lr_teacher": 0.01,
        "num_experts": 2,
        "checkpoint_every": 10,
    }
    base.update(method)
    return base


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def hub(monkeypatch):
    """An in-memory Hub behind huggingface_hub's own HTTP client (tests/fake_hub.py), with a write token set."""
    import huggingface_hub.constants

    from .fake_hub import FakeHub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", "hf_write_token")
    fake = FakeHub()
    fake.install()
    yield fake
    fake.uninstall()


def pytest_collection_modifyitems(items):
    """The everyday tier: `pytest -m fast` selects every test not marked heavy or slow."""
    for item in items:
        if not any(item.get_closest_marker(m) for m in ("heavy", "slow")):
            item.add_marker(pytest.mark.fast)
