"""CPU threads: every core by default under `python -m` and `accelerate launch` alike, a recipe or env value wins."""

from __future__ import annotations

import os

from hf_condense.methods.context import cpu_threads


def test_default_is_all_cores_shared_among_local_processes(monkeypatch):
    for var in ("HF_CONDENSE_THREADS", "OMP_NUM_THREADS", "LOCAL_WORLD_SIZE", "ACCELERATE_DYNAMO_BACKEND"):
        monkeypatch.delenv(var, raising=False)
    cores = len(os.sched_getaffinity(0))
    assert cpu_threads() == (cores, f"{cores} core(s) / 1 process(es)")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert cpu_threads()[0] == max(1, cores // 2)


def test_accelerate_launchers_omp_default_is_not_read(monkeypatch):
    monkeypatch.delenv("HF_CONDENSE_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert cpu_threads() == (1, "OMP_NUM_THREADS")  # python -m: the user's own setting
    monkeypatch.setenv("ACCELERATE_DYNAMO_BACKEND", "no")  # accelerate launch sets OMP_NUM_THREADS=1 itself
    assert cpu_threads()[0] == len(os.sched_getaffinity(0))


def test_recipe_beats_env_beats_default(monkeypatch):
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    monkeypatch.setenv("HF_CONDENSE_THREADS", "3")
    assert cpu_threads() == (3, "HF_CONDENSE_THREADS")
    assert cpu_threads(5) == (5, "recipe threads")


def test_more_threads_than_cores_is_kept_and_said(monkeypatch):
    monkeypatch.delenv("HF_CONDENSE_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert cpu_threads(4) == (4, "recipe threads")
    threads, source = cpu_threads(100)  # e.g. a recipe made on a larger machine: kept, and said to be oversubscribed
    assert threads == 100 and source == (
        "recipe threads; more than this process's 4 of 8 core(s): oversubscribed, expect a large slowdown"
    )
