"""Phases show a start line, a bar whose every draw has a rate and an ETA, and an end line with their time."""

from __future__ import annotations

import time

from hf_condense.core.progress import Progress, duration


def test_bar_is_first_drawn_with_a_rate_and_reports_values(monkeypatch, capsys):
    monkeypatch.setenv("HF_CONDENSE_PROGRESS_INTERVAL", "0")
    logged = []
    with Progress("experts", 3, "epoch", log=lambda v, step: logged.append((step, v))) as p:
        for _ in range(3):
            time.sleep(0.01)
            p.update(1, loss=0.5, accuracy=0.25)
    out, err = capsys.readouterr()
    lines = out.splitlines()  # bars on stdout, between the phase's own lines: one stream keeps them in order
    assert lines[0] == "experts: 3 epoch(s)" and lines[-1] == f"experts: done in {duration(p.seconds)}" and not err
    draws = [d for d in "\n".join(lines[1:-1]).split("\r") if d.strip()]
    assert draws and "?" not in out  # never `0/3 [?, ?epoch/s]`
    assert "epoch/s" in draws[0] and "loss=0.5" in draws[-1] and "3/3" in draws[-1]
    assert logged == [(n, {"experts/loss": 0.5, "experts/accuracy": 0.25}) for n in (1, 2, 3)]


def test_a_failed_phase_prints_no_done_line(capsys):
    try:
        with Progress("stage 1 mtt", 5, detail="5 iteration(s)"):
            raise RuntimeError("diverged")
    except RuntimeError:
        pass
    assert "done" not in capsys.readouterr().out


def test_durations_read_naturally():
    assert [duration(s) for s in (3.21, 245, 7380)] == ["3.2s", "4m05s", "2h03m"]
