"""The shipped recipes as a catalogue: listed from their headers, shown, copied, and run by name."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from hf_condense.cli import main
from hf_condense.stages.catalogue import find, recipes_dir, shipped
from hf_condense.stages.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[2]


def test_the_list_names_every_shipped_recipe_with_its_expected_figure_and_status(capsys):
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    names = sorted(p.stem for p in recipes_dir().glob("*.yaml"))
    assert names and all(f"\n{name} " in out for name in names)
    assert all(e.expected and e.status for e in shipped())  # every header says both
    pdd = next(e for e in shipped() if e.name == "cifar10_pdd_mtt_ipc10")
    assert (pdd.method, pdd.stages, pdd.ipc) == ("pdd + mtt", 5, 10) and pdd.expected.startswith("66.9")
    assert "cifar10_pdd_mtt_ipc10        pdd + mtt       5 x 2" in out


def test_the_top_level_folders_are_the_packages_own_files():
    """recipes/ and model_card_template.md at the top of a clone are the installed package's files, not copies."""
    assert (ROOT / "recipes").resolve() == recipes_dir().resolve()
    template = ROOT / "hf_condense" / "templates" / "model_card_template.md"
    assert (ROOT / "model_card_template.md").resolve() == template.resolve()


def test_show_and_copy_a_recipe_and_never_overwrite(tmp_path, capsys):
    assert main(["recipes", "show", "quickstart"]) == 0
    assert capsys.readouterr().out == find("quickstart").read_text()
    assert main(["recipes", "copy", "quickstart", str(tmp_path)]) == 0
    copied = tmp_path / "quickstart.yaml"
    assert copied.read_text() == find("quickstart").read_text()
    copied.write_text("mine")
    assert main(["recipes", "copy", "quickstart.yaml", str(copied)]) == 2
    assert "already exists; choose another path (nothing is overwritten)" in capsys.readouterr().err
    assert copied.read_text() == "mine"
    assert main(["recipes", "show", "quickstrt"]) == 2
    assert capsys.readouterr().err == (
        "error: quickstrt: no shipped recipe of that name (did you mean 'quickstart'?); `hf-condense recipes` lists "
        "them\n"
    )


def test_a_recipe_runs_by_its_name_and_a_file_of_that_name_wins(tmp_path, monkeypatch):
    assert load_recipe("quickstart").stages.count == 3
    assert load_recipe("cifar10_mtt_ipc10.yaml").dataset.path == "uoft-cs/cifar10"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "quickstart").write_text("dataset:\n  path: sklearn/digits\nmethod:\n  name: random\n")
    assert load_recipe("quickstart").method.name == "random"  # the user's own file first


@pytest.mark.slow
def test_a_wheel_ships_the_recipes_and_the_card_template(tmp_path):
    source = tmp_path / "source"  # built from a copy: setuptools leaves build/ beside the sources
    shutil.copytree(ROOT / "hf_condense", source / "hf_condense", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q", "-w", tmp_path],
        check=True,
        cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("hf_condense-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"hf_condense/recipes/{p.name}" for p in recipes_dir().glob("*.yaml")} <= names
    assert "hf_condense/templates/model_card_template.md" in names
    # run from the installed wheel, away from the clone: the shipped name resolves inside the installed package
    site = tmp_path / "site"  # the wheel installed by pip (its dependencies are this environment's)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(site), str(wheel)],
        check=True,
    )
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = subprocess.run(
        [sys.executable, "-c", "import hf_condense; print(hf_condense.__file__)"],
        env=env,
        cwd=work,
        text=True,
        capture_output=True,
        check=True,
    )
    assert where.stdout.startswith(str(site))
    tiny = [
        "stages.count=1",
        "method.iterations=2",
        "method.num_experts=1",
        "evaluation.runs=1",
        "evaluation.epochs=2",
        "output.dir=out",
    ]
    done = subprocess.run(
        [sys.executable, "-m", "hf_condense.distill", "quickstart", *tiny],
        env=env,
        cwd=work,
        text=True,
        capture_output=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (work / "out" / "stage_1" / "stage.json").is_file()


def test_a_reader_that_goes_away_ends_a_command_quietly(monkeypatch, capsys):
    """`hf-condense recipes | head -1`: when the pipe closes, no traceback and no second error at exit; stdout goes to
    /dev/null and the command exits 141, as a program stopped by SIGPIPE."""
    from hf_condense.cli import errors

    redirected = []
    monkeypatch.setattr(errors.os, "dup2", lambda fd, to: redirected.append((fd, to)))
    monkeypatch.setattr(errors.sys, "stdout", type("Out", (), {"fileno": lambda self: 1})())

    def write_to_a_closed_pipe():
        raise BrokenPipeError(32, "Broken pipe")

    assert errors.guarded(write_to_a_closed_pipe) == 141
    assert [to for _, to in redirected] == [1] and capsys.readouterr().err == ""
