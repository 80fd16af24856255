"""Run a module as `python -m` would, SIGKILLing the process just before its N-th write boundary.

    python tests/write_killer.py N COUNT_FILE MODULE ARGS...

A write boundary is every rename, replace or tree removal the run makes (each file hf_condense writes lands by a
rename; recovery removes trees), so killing before each one in turn covers every instant between two writes.
N < 0 kills nowhere and writes the number of boundaries the run crossed to COUNT_FILE. Used by
tests/faults.run_cli_killed_at_write (tests/stages/test_crash_safety.py, benchmarks/reliability.py).
"""

from __future__ import annotations

import os
import runpy
import shutil
import signal
import sys


def main() -> None:
    target, count_file, module, *args = sys.argv[1:]
    target, crossed = int(target), [0]

    def boundary(fn):
        def wrapped(*a, **k):
            if crossed[0] == target:
                os.kill(os.getpid(), signal.SIGKILL)
            crossed[0] += 1
            return fn(*a, **k)

        return wrapped

    os.replace, os.rename, shutil.rmtree = boundary(os.replace), boundary(os.rename), boundary(shutil.rmtree)
    sys.argv = [module, *args]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        if target < 0:
            with open(count_file, "w") as f:
                f.write(str(crossed[0]))


if __name__ == "__main__":
    main()
