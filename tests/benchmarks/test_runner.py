"""The benchmark runner (benchmarks/run.py) on the digits smoke table: it runs every row, resumes instead of
recomputing, records failures, refuses bad tables in one line, and the docs' benchmark page is its output."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

from hf_condense.methods import DivergenceError

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("benchmark_runner", ROOT / "benchmarks" / "run.py")
runner = importlib.util.module_from_spec(spec)
sys.modules["benchmark_runner"] = runner
spec.loader.exec_module(runner)
report = sys.modules["report"]  # benchmarks/report.py, imported by the runner


def run(*args: str | Path) -> int:
    return runner.main([str(a) for a in args])


# One worker runs this module under pytest-xdist, and the table's run lives for its session: it runs once.
pytestmark = pytest.mark.xdist_group("benchmark_table")


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """The digits table run once into a scratch folder: (runs folder, results folder, exit code)."""
    d = tmp_path_factory.mktemp("bench")
    rc = run("digits_tiny", "--runs", d / "runs", "--results", d / "results")
    return d / "runs", d / "results", rc


def rows(results: Path) -> dict[str, dict]:
    return {r["name"]: r for r in json.loads((results / "digits_tiny.json").read_text())["rows"]}


@pytest.mark.heavy
def test_table_runs_every_row_and_reports(tiny):
    runs, results, rc = tiny
    assert rc == 0
    got = rows(results)
    assert list(got) == ["random real", "herding", "MTT", "PDD + MTT (2 x 1)"]
    assert all(s["status"] == "ok" for r in got.values() for s in r["seeds"])
    assert len(got["MTT"]["seeds"]) == 2 and got["MTT"]["std_over"] == "seeds"
    assert got["MTT"]["ior"] > 0 and got["PDD + MTT (2 x 1)"]["ior"] > 0  # distilled beats random real images
    assert got["MTT"]["image_steps"] == 20 * 10 * 20  # iterations x student steps x all 20 images
    # stage 2's student steps take classes x its IPC = 10 images, drawn from the union of 20 (MTT revision 1)
    assert got["PDD + MTT (2 x 1)"]["image_steps"] == 10 * 10 * (10 + 10)
    assert got["random real"]["image_steps"] == 0
    pdd = got["PDD + MTT (2 x 1)"]["seeds"][0]
    assert [p[0] for p in pdd["per_stage"]] == [1, 2]  # cumulative IPC
    assert len(pdd["stage_lr"]) == 2 and pdd["stage_lr"][-1] == pdd["lr"]  # each stage's learned step size
    assert all(loss > 0 for loss in pdd["stage_loss"])  # and its final matching loss
    md = (results / "digits_tiny.md").read_text()
    assert all(f"| {name} | 2 |" in md for name in got) and "Provenance: hf_condense" in md
    assert f"(lr {pdd['stage_lr'][0]:.4g}, loss {pdd['stage_loss'][0]:.3f})" in md  # shown per stage
    assert (results / "digits_tiny.png").stat().st_size > 0


@pytest.mark.heavy
def test_rerun_reuses_finished_rows(tiny, monkeypatch):
    runs, results, _ = tiny
    before = (results / "digits_tiny.json").read_text()
    monkeypatch.setattr(runner.hf_condense, "run", lambda *a, **k: pytest.fail("a finished row was run again"))
    assert run("digits_tiny", "--runs", runs, "--results", results) == 0
    assert (results / "digits_tiny.json").read_text() == before


@pytest.mark.heavy
def test_interrupted_row_resumes_to_the_same_result(tiny, tmp_path):
    """A row whose stages are on disk but whose record is not (killed during evaluation) resumes from its run folder
    (the library skips the finished stage) and gives the uninterrupted row's accuracy."""
    runs, results, _ = tiny
    shutil.copytree(runs, tmp_path / "runs")
    saved = json.loads((results / "digits_tiny.json").read_text())
    first, uninterrupted = next(r for r in saved["rows"] if r["name"] == "MTT")["seeds"]
    for r in saved["rows"]:
        if r["name"] == "MTT":
            r["seeds"] = r["seeds"][:1]
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "digits_tiny.json").write_text(json.dumps(saved))
    assert run("digits_tiny", "MTT", "--runs", tmp_path / "runs", "--results", tmp_path / "results") == 0
    resumed = rows(tmp_path / "results")["MTT"]["seeds"][1]
    assert resumed["resumed"] and not uninterrupted["resumed"]
    assert resumed["acc"] == uninterrupted["acc"] and resumed["std"] == uninterrupted["std"]
    row = rows(tmp_path / "results")["MTT"]  # the resumed seed timed its last sitting only: the row's time is seed 0's
    assert row["seconds"] == round(first["seconds"]) and not row["seconds_resumed"]


@pytest.mark.heavy
def test_a_row_restarted_from_an_in_stage_checkpoint_counts_as_resumed(tiny, tmp_path):
    """No finished stage but a checkpoint on disk (killed mid-stage): the sitting's time is not the row's."""
    runs, results, _ = tiny
    shutil.copytree(runs, tmp_path / "runs")
    folder = tmp_path / "runs" / "digits_tiny" / "herding" / "seed_0"
    shutil.rmtree(folder / "stage_1")
    (folder / runner.CHECKPOINTS / "stage_1").mkdir(parents=True)
    (folder / runner.CHECKPOINTS / "stage_1" / "state.safetensors").write_bytes(b"")
    saved = json.loads((results / "digits_tiny.json").read_text())
    saved["rows"] = [r for r in saved["rows"] if r["name"] != "herding"]
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "digits_tiny.json").write_text(json.dumps(saved))
    assert run("digits_tiny", "herding", "--runs", tmp_path / "runs", "--results", tmp_path / "results") == 0
    row = rows(tmp_path / "results")["herding"]
    assert row["seeds"][0]["resumed"] and row["seconds_resumed"]
    assert "(resumed) |" in next(
        ln for ln in (tmp_path / "results" / "digits_tiny.md").read_text().splitlines() if ln.startswith("| herding |")
    )


def test_a_row_timed_only_by_resumed_seeds_says_so():
    row = {"name": "MTT", "ipc": 10, "acc": 46.0, "std": 0.5, "std_over": "networks", "seeds": []}
    assert report.main_table([{**row, "seconds": 656, "seconds_resumed": True}])[-1].endswith("| 656 (resumed) |")
    assert report.main_table([{**row, "seconds": 1074, "seconds_resumed": False}])[-1].endswith("| 1074 |")
    assert report.main_table([row])[-1].endswith("| - |")


def test_a_diverged_row_is_reported_and_the_table_goes_on(tmp_path, monkeypatch, capsys):
    def diverge(recipe, *a, **k):
        raise DivergenceError("stage 1 diverged at iteration 3 (alpha 2.1 out of range)")

    monkeypatch.setattr(runner.hf_condense, "run", diverge)
    assert run("digits_tiny", "herding", "MTT", "--runs", tmp_path / "runs", "--results", tmp_path) == 0
    got = rows(tmp_path)
    assert got["herding"]["seeds"][0]["status"].startswith("DivergenceError: stage 1 diverged")
    assert len(got["MTT"]["seeds"]) == 2 and "acc" not in got["MTT"]  # every seed tried, none has an accuracy
    assert "**DivergenceError: stage 1 diverged" in (tmp_path / "digits_tiny.md").read_text()
    assert "not run yet" in (tmp_path / "digits_tiny.md").read_text()  # the rows not asked for


BAD = {
    "unknown key": ("rows:\n  - name: a\n    recipe: recipes/quickstart.yaml\n    overides: []\n", "overides"),
    "missing recipe": ("rows:\n  - name: a\n    recipe: recipes/nope.yaml\n", "recipes/nope.yaml"),
    "bad override": (
        "rows:\n  - name: a\n    recipe: recipes/quickstart.yaml\n    overrides: [method.iterations=abc]\n",
        "method.iterations",
    ),
    "duplicate name": (
        "recipe: recipes/quickstart.yaml\nrows:\n  - name: a\n  - name: a\n",
        "used twice",
    ),
    "bad seeds": ("rows:\n  - name: a\n    recipe: recipes/quickstart.yaml\n    seeds: 0\n", "seeds"),
    "no rows": ("title: x\n", "rows"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_tables_are_refused_in_one_line(case, tmp_path, capsys):
    text, named = BAD[case]
    table = tmp_path / "bad.yaml"
    table.write_text(text)
    assert run(table, "--runs", tmp_path / "runs", "--results", tmp_path) == 2
    err = capsys.readouterr().err.strip()
    assert named in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "runs").exists()  # refused before any compute


def test_unknown_row_and_table_are_refused(tmp_path, capsys):
    assert run("digits_tiny", "MTTT", "--runs", tmp_path, "--results", tmp_path) == 2
    assert "no row named 'MTTT'" in capsys.readouterr().err
    assert run("no_such_table", "--runs", tmp_path, "--results", tmp_path) == 2
    assert "digits_tiny" in capsys.readouterr().err  # the tables there are


def test_shipped_tables_parse_and_name_hub_ids(tmp_path):
    """Every committed table loads and every row's recipe parses; no recipe points into ../shared."""
    for path in sorted((ROOT / "benchmarks" / "tables").glob("*.yaml")):
        table = runner.load_table(str(path))
        for row in table.rows:
            recipe = runner.recipe_of(row, 0, tmp_path / "out", tmp_path / "cache")
            assert "shared" not in recipe.dataset.path, (path.name, row.name)
    for recipe in (ROOT / "recipes").glob("*.yaml"):
        assert "../shared" not in recipe.read_text(), recipe.name


def test_docs_benchmark_page_is_generated_from_the_results():
    tables = sorted((ROOT / "benchmarks" / "tables").glob("*.yaml"))
    results = [runner.read_results(ROOT / "benchmarks" / "results" / f"{t.stem}.json") for t in tables]
    assert report.summary_section(results) in (ROOT / "docs" / "benchmarks.md").read_text()
