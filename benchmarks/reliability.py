"""Reliability report: bad inputs tried and refused, faults injected and survived.

1. Runs the bad-input catalogue, the per-unit kill tests, the cache-damage tests and the security checks with
   pytest and counts what passed.
2. Kills the real CLI (SIGKILL) just before each of its write boundaries in turn (every rename, replace and tree
   removal of a PDD + MTT run on digits: tests/write_killer.py), and at uniformly random moments; after each kill it
   reruns the same command and checks that the result equals an uninterrupted run's, bit for bit.
3. Stops it with SIGTERM at uniformly random moments after its start-up (its first printed line: before it Python
   is still importing) and before its last line (`output: ...`; after it only Python's interpreter teardown is
   left, about a second): each must end in one line and exit code 143, and its rerun must equal the uninterrupted
   run. Python's own handling applies outside that span, and the report counts those separately.

    nohup python benchmarks/reliability.py > benchmarks/results/reliability.log 2>&1 &

Resumable: each kill's outcome is kept in benchmarks/runs/reliability/ as it is measured.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.faults import run_cli, run_cli_killed_at_write, same_stages, watch_cli, write_recipe  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "reliability"
WORK = ROOT / "benchmarks" / "runs" / "reliability"
SUITES = {
    "bad inputs refused cleanly": "tests/cli/test_bad_inputs.py",
    "kills inside a unit or before a first write, resumed to the same result": "tests/stages/test_crash_safety.py",
    "run folder: lock, own temporary names, unfinished stages, load_dataset": "tests/stages/test_run_folder.py",
    "damaged cache files caught": "tests/core/test_caches.py",
    "security checks": "tests/hub/test_security.py",
    "faults around the run folder: caches, models, path kinds, the network, data that does not fit": (
        "tests/cli/test_surroundings.py"
    ),
}
RANDOM_KILLS = 6


def suite_counts(path: str, junit: Path) -> dict:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            path,
            "-q",
            "-p",
            "no:cacheprovider",
            f"--junitxml={junit}",
            "-o",
            "addopts=",
        ],
        cwd=ROOT,
        check=False,
    )
    suite = ET.parse(junit).getroot().find("testsuite")
    tests, bad = int(suite.get("tests")), int(suite.get("failures")) + int(suite.get("errors"))
    return {"tried": tests - int(suite.get("skipped")), "passed": tests - bad - int(suite.get("skipped"))}


def random_kills(work: Path, n: int, seed: int = 0) -> dict:
    """n SIGKILLs at uniform random times within the uninterrupted run's duration, and n SIGTERMs at uniform random
    times after its start-up, each followed by a rerun."""
    rng = random.Random(seed)
    reference = watch_cli(write_recipe(work, "reference"))
    if reference.returncode != 0:
        raise RuntimeError(f"the reference run exited {reference.returncode}: {reference.stderr[-2000:]}")
    duration, startup = reference.seconds, reference.started_s
    kills, stops = [], []
    for i in range(n):
        name = f"killed_{i}"
        recipe = write_recipe(work, name)
        at = rng.uniform(0.05, 0.95) * duration
        killed = run_cli(recipe, lambda elapsed, at=at: elapsed >= at)
        run_cli(recipe)
        problems = same_stages(work / "reference", work / name)
        kills.append({"at_s": round(at, 1), "killed": killed, "same_result": not problems, "problems": problems})
    for i in range(n):
        name = f"terminated_{i}"
        recipe = write_recipe(work, name)
        after = rng.uniform(0.05, 0.95) * (duration - startup)
        run = watch_cli(recipe, lambda t, started, after=after: started is not None and t - started >= after)
        run_cli(recipe)
        problems = same_stages(work / "reference", work / name)
        stops.append(
            {
                "after_start_s": round(after, 1),
                "signalled": run.signalled,
                "after_last_line": "\noutput: " in f"\n{run.stdout}",
                "exit": run.returncode,
                "one_line": run.terminated_cleanly,
                "same_result": not problems,
                "problems": problems,
            }
        )
    return {"reference_s": round(duration, 1), "startup_s": round(startup, 1), "kills": kills, "sigterms": stops}


def boundary_kills(work: Path) -> dict:
    """A kill just before every write boundary of the run, in turn, each followed by a rerun (kept as measured)."""
    work.mkdir(parents=True, exist_ok=True)
    done_file = work / "boundaries.json"
    done = json.loads(done_file.read_text()) if done_file.is_file() else {}
    reference = work / "reference"
    if not (reference / "results.json").is_file():
        shutil.rmtree(reference, ignore_errors=True)
        done = {"count": run_cli_killed_at_write(write_recipe(work, "reference"), -1), "kills": {}}
        done_file.write_text(json.dumps(done))
    for i in range(done["count"]):
        if str(i) in done["kills"]:
            continue
        name = f"boundary_{i}"
        shutil.rmtree(work / name, ignore_errors=True)
        shutil.rmtree(work / f"{name}_cache", ignore_errors=True)
        recipe = write_recipe(work, name)
        try:
            killed = run_cli_killed_at_write(recipe, i)
            run_cli(recipe)
            problems = same_stages(reference, work / name)
        except (RuntimeError, TimeoutError) as e:
            killed, problems = True, [f"rerun failed: {str(e).splitlines()[-1][:300]}"]
        done["kills"][str(i)] = {"killed": killed, "same_result": not problems, "problems": problems}
        done_file.write_text(json.dumps(done))
        shutil.rmtree(work / name, ignore_errors=True)
        shutil.rmtree(work / f"{name}_cache", ignore_errors=True)
        print(f"boundary {i + 1}/{done['count']}: killed {killed}, same result {not problems} {problems}", flush=True)
    return done


def main() -> None:
    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        for title, path in SUITES.items():
            report[title] = suite_counts(path, Path(tmp) / "junit.xml")
        report["write boundaries"] = boundary_kills(WORK)
        report["random kills"] = random_kills(Path(tmp), RANDOM_KILLS)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{RESULTS}.json").write_text(json.dumps(report, indent=2) + "\n")
    kills = report["random kills"]["kills"]
    injected = sum(k["killed"] for k in kills)
    survived = sum(k["killed"] and k["same_result"] for k in kills)
    lines = ["| check | tried | passed |", "|---|---|---|"]
    lines += [f"| {t} | {report[t]['tried']} | {report[t]['passed']} |" for t in SUITES]
    bounds = list(report["write boundaries"]["kills"].values())
    tried, kept = sum(b["killed"] for b in bounds), sum(b["killed"] and b["same_result"] for b in bounds)
    count = report["write boundaries"]["count"]
    lines.append(f"| SIGKILL before each of the run's {count} write boundaries, rerun equals it | {tried} | {kept} |")
    lines.append(f"| SIGKILL at random moments, rerun equals an uninterrupted run | {injected} | {survived} |")
    stops = report["random kills"]["sigterms"]
    during = [s for s in stops if s["signalled"] and not s["after_last_line"]]
    clean = sum(s["one_line"] and s["same_result"] for s in during)
    lines.append(
        "| SIGTERM at random moments of the run: exit 143 in one line, rerun equals an uninterrupted run "
        f"| {len(during)} | {clean} |"
    )
    late = [s for s in stops if s["signalled"] and s["after_last_line"]]
    missed = len(stops) - len(during) - len(late)
    at = ", ".join(f"{k['at_s']}s" for k in kills)
    after = ", ".join(f"{s['after_start_s']}s" for s in stops)
    rk = report["random kills"]
    lines += [
        "",
        f"Random kill times ({rk['reference_s']}s uninterrupted run, first line after {rk['startup_s']}s): {at}; "
        f"SIGTERM times after the first line: {after}. Of these, {len(late)} landed after the run's last line, in "
        f"Python's interpreter teardown (exit {sorted({s['exit'] for s in late})}, everything already written; rerun "
        f"equal: {sum(s['same_result'] for s in late)} of {len(late)}), and {missed} after the process had ended.",
    ]
    Path(f"{RESULTS}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
