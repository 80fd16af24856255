"""The catalogue of bad inputs. Each is refused with one line that names the key, file or column and says what is
expected, before any work where that is possible, and nothing the user already had is changed.
benchmarks/reliability.py counts these cases in its committed report.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

import hf_condense
from hf_condense.core.config import RecipeError
from hf_condense.methods import DivergenceError
from hf_condense.stages.recipe import load_recipe
from hf_condense.stages.run_folder import StageDataError, read_stage

from ..data.test_sources import make_repo


@dataclass
class Env:
    tmp_path: Path
    tiny: dict
    accelerator: object
    monkeypatch: pytest.MonkeyPatch

    def run(self, overrides=()):
        return hf_condense.run(load_recipe(self.tiny, list(overrides)), self.accelerator)

    def yaml(self, text: str):
        path = self.tmp_path / "recipe.yaml"
        path.write_text(text)
        return load_recipe(path)

    def data(self, **repo):
        """A run on a local Hub-layout dataset made by tests/test_data.make_repo(**repo)."""
        (self.tmp_path / "repo").mkdir(exist_ok=True)
        self.tiny["dataset"] = {**self.tiny["dataset"], "path": str(make_repo(self.tmp_path / "repo", **repo))}
        self.tiny["stages"] = {"count": 1, "ipc": 1}
        return self.run()

    def stage_then(self, edit: Callable[[Path], None]):
        """A finished one-stage run whose stage_1 is then edited by `edit(stage folder)` and read back."""
        self.tiny["stages"] = {"count": 1, "ipc": 1}
        self.run()
        stage = self.tmp_path / "out" / "stage_1"
        edit(stage)
        return read_stage(stage)


def _parquet(stage: Path) -> Path:
    (path,) = stage.glob("train-*.parquet")
    return path


def _reseal(stage: Path) -> None:
    """Record the edited parquet's checksum, as if the stage had been written that way."""
    from hf_condense.core.io import file_sha256

    meta = json.loads((stage / "stage.json").read_text())
    meta["files"] = {_parquet(stage).name: file_sha256(_parquet(stage))}
    (stage / "stage.json").write_text(json.dumps(meta))


def _newer_format(stage: Path):
    meta = json.loads((stage / "stage.json").read_text())
    (stage / "stage.json").write_text(json.dumps({**meta, "format": 99}))


def _nan_image(stage: Path):
    import datasets

    ds = datasets.Dataset.from_parquet(str(_parquet(stage)))
    images = torch.tensor(ds["image"])
    images[0, 0, 0, 0] = float("nan")
    ds.remove_columns("image").add_column("image", images.numpy().tolist(), feature=ds.features["image"]).to_parquet(
        str(_parquet(stage))
    )
    _reseal(stage)


def _file(env: Env, name: str, text: str = "x") -> Path:
    path = env.tmp_path / name
    path.write_text(text)
    return path


@dataclass
class Case:
    name: str
    provoke: Callable[[Env], object]
    error: type[Exception]
    needle: str
    hub: str | None = None  # run against the in-memory Hub with this token (None: no Hub needed)


def _set(section: str, **values):
    def provoke(env: Env):
        env.tiny.setdefault(section, {}).update(values)
        return load_recipe(env.tiny)

    return provoke


def _no_token(env: Env):
    env.monkeypatch.delenv("HF_TOKEN")
    env.monkeypatch.setenv("HF_HOME", str(env.tmp_path / "hf_home"))  # no saved token either
    return _push(env)


def _push(env: Env):
    env.tiny["output"].update(push_to_hub=True, repo_id="alice/digits")
    return env.run()


def _full_disk(env: Env):
    full = shutil._ntuple_diskusage(total=10 << 30, used=10 << 30, free=1 << 20)
    env.monkeypatch.setattr("hf_condense.stages.recipe.shutil.disk_usage", lambda path: full)
    return env.run()


def _binary_recipe(env: Env):
    path = env.tmp_path / "recipe.yaml"
    path.write_bytes(bytes(range(128, 256)))
    return load_recipe(path)


def _truncate_parquet(stage: Path):
    f = _parquet(stage)
    f.write_bytes(f.read_bytes()[:100])
    _reseal(stage)


def _label_out_of_range(stage: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    f = _parquet(stage)
    table = pq.read_table(f)
    i = table.schema.get_field_index("label")
    table = table.set_column(i, table.schema.field(i), pa.array([99] * len(table), type=table.schema.field(i).type))
    pq.write_table(table, f)
    _reseal(stage)


def _altered_image(stage: Path):
    f = _parquet(stage)
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside the image data
    f.write_bytes(bytes(data))


def _foreign_folder(env: Env):
    (env.tmp_path / "out").mkdir()
    _file(env, "out/mine.txt")
    return env.run()


def _dataset(env: Env, **section):
    env.tiny["dataset"] = section
    return env.run() if "path" in section else env.data()


CASES = [
    # recipe files
    Case("malformed YAML", lambda e: e.yaml("dataset:\n  path: [unclosed\n"), RecipeError, "malformed YAML at line"),
    Case(
        "missing recipe file",
        lambda e: load_recipe(e.tmp_path / "nope.yaml"),
        RecipeError,
        "no such file; expected a recipe",
    ),
    Case("recipe is not a mapping", lambda e: e.yaml("- a\n- b\n"), RecipeError, "expected a mapping of sections"),
    # keys and types
    Case("unknown key", _set("evaluation", epoch=3), RecipeError, "evaluation.epoch: unknown key"),
    Case("unknown method key", _set("method", name="mtt", synsteps=3), RecipeError, "method.synsteps: unknown key"),
    Case("unknown method", _set("method", name="mttt"), RecipeError, "did you mean 'mtt'"),
    Case("wrong type", _set("stages", count="three"), RecipeError, "stages.count: expected int, got 'three'"),
    Case("bool for an int", _set("evaluation", runs=True), RecipeError, "evaluation.runs: expected int"),
    Case("zero size", _set("stages", count=0), RecipeError, "stages.count: 0 is too small; must be >= 1"),
    Case("negative size", _set("stages", ipc=-2), RecipeError, "stages.ipc: -2 is too small; must be >= 1"),
    Case("negative lr", _set("evaluation", lr=-0.1), RecipeError, "evaluation.lr: -0.1 is too small; must be > 0"),
    Case("per-stage IPC list of the wrong length", _set("stages", ipc=[1, 2, 3]), RecipeError, "has 3 entries"),
    Case("timm name that does not exist", _set("model", name="resnet181"), RecipeError, "is not a timm model"),
    Case("unknown augmentation", _set("augment", strategy="color_blur"), RecipeError, "augment.strategy"),
    Case(
        "unknown tracker",
        _set("output", log_with=["tensorbord"]),
        RecipeError,
        "'tensorbord' is not an Accelerate tracker (did you mean 'tensorboard'?)",
    ),
    Case("bad override", lambda e: load_recipe(e.tiny, ["method.iterations"]), RecipeError, "expected key.path=value"),
    Case(
        "malformed override value",
        lambda e: load_recipe(e.tiny, ["method.iterations=[1,"]),
        RecipeError,
        "override 'method.iterations=[1,': its value is not valid YAML",
    ),
    Case("binary recipe file", _binary_recipe, RecipeError, "not a text file"),
    Case("empty recipe file", lambda e: e.yaml("\n"), RecipeError, "the recipe is empty"),
    Case("seed too large", lambda e: e.run(["seed=4294967296"]), RecipeError, "seed: 4294967296 is too large"),
    Case("NaN lr", lambda e: e.run(["evaluation.lr=.nan"]), RecipeError, "evaluation.lr: nan is not a finite number"),
    Case(
        "unknown model kwarg",
        lambda e: e.run(["model.kwargs={depht: 2}"]),
        RecipeError,
        "model.kwargs: convnet_d2w16 does not take {'depht': 2}",
    ),
    Case(
        "model too deep for the images",
        lambda e: e.run(["model.name=convnet_d5w16"]),
        RecipeError,
        "cannot be built for (1, 8, 8) images",
    ),
    # data
    Case(
        "dataset that does not exist", lambda e: _dataset(e, path=str(e.tmp_path / "nowhere")), RecipeError, "nowhere"
    ),
    Case(
        "Hub dataset id without network",
        lambda e: _dataset(e, path="nobody-here/no-such-dataset"),
        RecipeError,
        "cannot reach 'nobody-here/no-such-dataset' on the Hub",
    ),
    Case(
        "Hub dataset id whose local mapping has no copy",
        lambda e: (
            e.monkeypatch.setenv("HF_CONDENSE_DATASETS", str(e.tmp_path)),
            _dataset(e, path="nobody-here/no-such-dataset"),
        ),
        RecipeError,
        "is set, but",
    ),
    Case("dataset without images", lambda e: e.data(drop="img"), RecipeError, "dataset.image_column: no Image column"),
    Case(
        "dataset without labels",
        lambda e: e.data(drop="label"),
        RecipeError,
        "dataset.label_column: no ClassLabel column",
    ),
    Case(
        "non-image column as images",
        lambda e: _dataset(e, image_column="note"),
        RecipeError,
        "column 'note' is Value, expected Image",
    ),
    Case(
        "split that does not exist",
        lambda e: _dataset(e, test_split="validation"),
        RecipeError,
        "dataset.test_split: split 'validation' does not exist; splits: train, test",
    ),
    Case("missing labels", lambda e: e.data(test_label=-1), RecipeError, "have negative (missing) labels"),
    Case(
        "IPC above the smallest class",
        lambda e: e.run(["stages.ipc=100"]),
        RecipeError,
        "images per class, but the smallest class",
    ),
    # output folder
    Case(
        "output dir that is a file",
        lambda e: e.run([f"output.dir={_file(e, 'file')}"]),
        RecipeError,
        "is a file; give a folder path",
    ),
    Case(
        "output dir below a file",
        lambda e: e.run([f"output.dir={_file(e, 'file')}/out"]),
        RecipeError,
        "cannot be made:",
    ),
    Case("output dir on a virtual file system", lambda e: e.run(["output.dir=/proc/out"]), RecipeError, "cannot be"),
    Case(
        "non-empty output dir of no run",
        _foreign_folder,
        RecipeError,
        "is not empty and holds no hf_condense run",
    ),
    Case(
        "output dir of another recipe",
        lambda e: (e.run(), e.run(["seed=1"]))[1],
        RecipeError,
        "holds stages of a different recipe",
    ),
    Case("no disk space", _full_disk, RecipeError, "MB free on"),
    Case("stage folder from a newer format", lambda e: e.stage_then(_newer_format), StageDataError, "newer than"),
    Case("NaN in a stored stage", lambda e: e.stage_then(_nan_image), StageDataError, "NaN or infinite"),
    Case(
        "damaged stage.json",
        lambda e: e.stage_then(lambda st: (st / "stage.json").write_text("{not json")),
        StageDataError,
        "unreadable or damaged",
    ),
    Case(
        "truncated stage parquet", lambda e: e.stage_then(_truncate_parquet), StageDataError, "unreadable or damaged"
    ),
    Case("label id out of range", lambda e: e.stage_then(_label_out_of_range), StageDataError, "fall outside"),
    Case("stage altered on disk", lambda e: e.stage_then(_altered_image), StageDataError, "do not match the checksum"),
    Case(
        "stage altered before resume",
        lambda e: (e.stage_then(lambda st: None), _altered_image(e.tmp_path / "out" / "stage_1"), e.run())[2],
        StageDataError,
        "do not match the checksum",
    ),
    # Hub
    Case(
        "invalid repo id",
        lambda e: (e.tiny["output"].update(push_to_hub=True, repo_id="alice/bad--name.."), load_recipe(e.tiny))[1],
        RecipeError,
        "is not a valid Hub repo id",
    ),
    Case("push without a repo id", _set("output", push_to_hub=True), RecipeError, "output.repo_id: required"),
    Case("missing token for push", _no_token, RecipeError, "no Hugging Face token", hub="hf_write_token"),
    Case("read-only token for push", _push, RecipeError, "cannot write", hub="hf_read_token"),
    # runs
    Case(
        "diverging run",
        lambda e: e.run(["method={name: mtt, iterations: 50, lr_lr: 1000, num_experts: 1, max_start_epoch: 1}"]),
        DivergenceError,
        "diverged at iteration",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_bad_input_is_refused_in_one_line(case, tmp_path, tiny, accelerator, request, monkeypatch):
    if case.hub is not None:
        request.getfixturevalue("hub")
        monkeypatch.setenv("HF_TOKEN", case.hub)
    (tmp_path / "keep.txt").write_text("precious")
    with pytest.raises(case.error) as info:
        case.provoke(Env(tmp_path, tiny, accelerator, monkeypatch))
    lines = info.value.errors if isinstance(info.value, RecipeError) else [str(info.value)]
    hits = [line for line in lines if case.needle in line]
    assert hits, lines
    assert all("\n" not in line for line in hits)
    assert (tmp_path / "keep.txt").read_text() == "precious"
