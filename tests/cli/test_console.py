"""The `hf-condense` console script: one CLI module with subcommands, beside `python -m hf_condense.<command>`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

import hf_condense
from hf_condense.cli import main


def test_version_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"hf-condense {hf_condense.__version__}"


def test_subcommands_share_the_error_boundary(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("method:\n  name: mtt\n  iterationz: 3\n")
    assert main(["distill", str(bad)]) == 2
    assert main(["experts", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("method.iterationz: unknown key (did you mean 'iterations'?)") == 2 and "Traceback" not in err
    assert main(["evaluate", str(tmp_path / "nowhere")]) == 2
    assert main(["push", str(tmp_path), "alice/x"]) == 2
    assert main(["push", str(tmp_path / "nowhere"), "alice/x"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert (
        err[-2]
        == f"error: {tmp_path}: no stage_k folders and README.md; expected a folder written by hf_condense.distill"
    )
    assert (
        err[-1] == f"error: {tmp_path / 'nowhere'}: no such folder; expected a folder written by hf_condense.distill"
    )


def test_a_missing_recipe_argument_names_only_the_recipe(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["distill"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.splitlines()[-1].endswith("the following arguments are required: recipe")


@pytest.mark.heavy
def test_the_console_script_and_python_m_are_the_same_command(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("stages:\n  count: 0\n")
    for cmd in (["hf-condense", "distill"], [sys.executable, "-m", "hf_condense.distill"]):
        proc = subprocess.run([*cmd, str(bad)], capture_output=True, text=True)
        assert proc.returncode == 2 and "stages.count: 0 is too small" in proc.stderr, proc.stderr


def test_ctrl_c_says_what_is_kept_and_exits_130(capsys, monkeypatch):
    from hf_condense.cli.errors import guarded

    def interrupted():
        raise KeyboardInterrupt

    assert guarded(interrupted) == 130
    assert "rerun the same command to resume" in capsys.readouterr().err
    monkeypatch.setenv("HF_CONDENSE_DEBUG", "1")
    with pytest.raises(KeyboardInterrupt):
        guarded(interrupted)


def test_sigterm_is_an_interrupt_that_exits_143_and_its_repeat_does_not_cut_the_save_short(capsys):
    from hf_condense.cli.errors import guarded

    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)

    def terminated():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)  # the signal lands here

    assert guarded(terminated) == 143
    assert capsys.readouterr().err.startswith("terminated (SIGTERM): ")

    saved = []

    def interrupted_then_terminated():  # accelerate launch: the terminal's Ctrl-C, then the launcher's SIGTERM
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        except KeyboardInterrupt:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)  # the save made while the first interrupt unwinds
            saved.append(True)
            raise

    assert guarded(interrupted_then_terminated) == 130 and saved == [True]
    assert capsys.readouterr().err.startswith("interrupted: ")
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before  # put back afterwards
