"""Run a benchmark table: `python benchmarks/run.py TABLE [ROW ...]`.

A table is `benchmarks/tables/TABLE.yaml` (or a path to one; format in benchmarks/README.md): rows of a recipe from
`recipes/` plus overrides, seeds and the published figure to read them against. Each row and seed runs into
`benchmarks/runs/TABLE/ROW/seed_S` (git-ignored) through `hf_condense.run`, so a killed table continues where it
stopped by the library's own resume (finished stages, experts and in-stage checkpoints are kept; a finished row is
not run again). After every row the results are rewritten: `benchmarks/results/TABLE.{json,md,png}`. Rows are named
on the command line by their exact names (all rows when none). Recipes name Hub ids; on an offline machine map them
to local copies with HF_CONDENSE_DATASETS (README, "Offline"):

    HF_CONDENSE_DATASETS=../shared/datasets nohup python benchmarks/run.py cifar10_cpu > /tmp/cifar10_cpu.log 2>&1 &
    python benchmarks/run.py fashion_mnist_cpu --report     # rewrite md/png (and the README section) only
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import write_report, write_summary  # noqa: E402

import hf_condense  # noqa: E402
from hf_condense.cli.errors import InputError, exit_code, guarded  # noqa: E402
from hf_condense.core.config import RecipeError  # noqa: E402
from hf_condense.core.io import content_key, write_json  # noqa: E402
from hf_condense.methods.gradient_matching import default_loops  # noqa: E402
from hf_condense.stages.run_folder import CHECKPOINTS, RunFolder, list_stages, stage_name  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TABLES, RUNS, RESULTS = ROOT / "benchmarks" / "tables", ROOT / "benchmarks" / "runs", ROOT / "benchmarks" / "results"
ROW_KEYS = {"name", "recipe", "overrides", "seeds", "reference", "start_from", "curve", "note"}
TABLE_KEYS = {"title", "profile", "recipe", "overrides", "seeds", "rows", "summary"}
REFERENCE_KEYS = {"value", "source", "protocol"}


@dataclass
class Row:
    """One line of a table: a recipe plus overrides, run from `seeds` seeds (0, 1, ...)."""

    name: str
    recipe: Path
    overrides: list[str]
    seeds: int = 1
    reference: dict | None = None  # the published figure to read the row against: value (%), source, protocol
    start_from: dict | None = None  # {row, stages, table}: copy that row's first stages (all when absent), then extend
    curve: str | None = None  # the figure's line this row belongs to (default: no line)
    note: str = ""


@dataclass
class Table:
    """A benchmark table: its rows, and the text its report opens with."""

    name: str
    title: str
    profile: str
    rows: list[Row] = field(default_factory=list)
    summary: bool = False  # the docs' benchmark page (docs/benchmarks.md) shows this table


def fail(msg: str) -> None:
    raise InputError(msg)


def load_table(spec: str) -> Table:
    """Read and check a table (a name under benchmarks/tables/ or a YAML path); every error names its key."""
    path = Path(spec) if spec.endswith((".yaml", ".yml")) else TABLES / f"{spec}.yaml"
    if not path.is_file():
        names = ", ".join(sorted(p.stem for p in TABLES.glob("*.yaml")))
        fail(f"{spec}: no such table (benchmarks/tables/ has: {names})")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        fail(f"{path}: malformed YAML: {getattr(e, 'problem', e)}")
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list) or not data["rows"]:
        fail(f"{path}: a table is a mapping with a non-empty list under 'rows'")
    unknown = set(data) - TABLE_KEYS
    if unknown:
        fail(f"{path}: unknown key(s) {sorted(unknown)}; a table has {sorted(TABLE_KEYS)}")
    table = Table(path.stem, str(data.get("title", path.stem)), str(data.get("profile", "")).strip())
    table.summary = bool(data.get("summary", False))
    for i, r in enumerate(data["rows"]):
        where = f"{path.name}: rows[{i}]"
        if not isinstance(r, dict) or not isinstance(r.get("name"), str):
            fail(f"{where}: each row is a mapping with a 'name'")
        where = f"{path.name}: row {r['name']!r}"
        if set(r) - ROW_KEYS:
            fail(f"{where}: unknown key(s) {sorted(set(r) - ROW_KEYS)}; a row has {sorted(ROW_KEYS)}")
        recipe = ROOT / str(r.get("recipe", data.get("recipe", "")))
        if not recipe.is_file():
            fail(f"{where}: recipe {r.get('recipe', data.get('recipe'))!r} is not a file (rows name a recipes/ file)")
        overrides = [*data.get("overrides", []), *r.get("overrides", [])]
        if not all(isinstance(o, str) for o in overrides):
            fail(f"{where}: overrides must be a list of 'key.path=value' strings")
        seeds = r.get("seeds", data.get("seeds", 1))
        if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1:
            fail(f"{where}: seeds must be a whole number >= 1, got {seeds!r}")
        ref = r.get("reference")
        if ref is not None and (not isinstance(ref, dict) or set(ref) - REFERENCE_KEYS or "value" not in ref):
            fail(f"{where}: reference must be a mapping with 'value' (and 'source', 'protocol')")
        start = r.get("start_from")
        if start is not None and (not isinstance(start, dict) or "row" not in start):
            fail(f"{where}: start_from must be a mapping with 'row' (and 'stages', 'table')")
        row = Row(r["name"], recipe, overrides, seeds, ref, start, r.get("curve"), str(r.get("note", "")))
        if any(x.name == row.name for x in table.rows):
            fail(f"{where}: the name is used twice; row names are unique in a table")
        table.rows.append(row)
    names = {x.name for x in table.rows}
    for row in table.rows:
        other = row.start_from.get("table") if row.start_from else None
        if other and not (TABLES / f"{other}.yaml").is_file():
            fail(f"{path.name}: row {row.name!r}: start_from table {other!r} is not in benchmarks/tables/")
        if row.start_from and not other and row.start_from["row"] not in names:
            fail(f"{path.name}: row {row.name!r}: start_from row {row.start_from['row']!r} is not in the table")
    return table


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")


def row_folder(runs: Path, table: str, row: str, seed: int) -> Path:
    """Where one row and seed of a table runs (the library's run folder)."""
    return runs / table / slug(row) / f"seed_{seed}"


def finished_folder(table: str, row: str, seed: int = 0) -> Path:
    """The run folder of a table row that has run here (for the scripts that read a row's saved stages)."""
    t = load_table(table)
    if row not in {r.name for r in t.rows}:
        fail(f"{t.name}: no row named {row!r}; rows: {', '.join(r.name for r in t.rows)}")
    folder = row_folder(RUNS, t.name, row, seed)
    if not (folder / "run.json").is_file():
        fail(f"{folder}: the row has not run here (python benchmarks/run.py {t.name} {row!r})")
    return folder


def recipe_of(row: Row, seed: int, folder: Path, cache: Path) -> hf_condense.Recipe:
    """The row's recipe for `seed`, writing into `folder`, with the table's shared expert cache."""
    return hf_condense.load_recipe(
        row.recipe, [*row.overrides, f"seed={seed}", f"output.dir={folder}", f"output.cache_dir={cache}"]
    )


def recipe_key(recipe: hf_condense.Recipe) -> str:
    """What decides a finished row's results: the recipe without its output section."""
    d = recipe.to_dict()
    d.pop("output")
    return content_key(d)


@functools.lru_cache(maxsize=1)
def commit() -> str:
    """The git commit the code runs at ('-dirty' with uncommitted changes to tracked files)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "-uno"], cwd=ROOT, capture_output=True, text=True)
    except OSError:
        return "unknown"
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "") if head.returncode == 0 else "unknown"


def image_steps(recipe: hf_condense.Recipe, sizes: list[int]) -> int:
    """Distillation compute: synthetic images passed through a network by the method's own optimisation steps, summed
    over stages of `sizes` images each (expert, transition and evaluation training excluded). MTT / RaT-BPTT:
    iterations x student steps (RaT-BPTT: the mean unroll) x images per step (MTT's default: the stage's own count);
    DM: iterations x the stage's images; DC / DSA: iterations x matching rounds x (the stage's images + inner epochs x
    the student's set); IDC: iterations x matching rounds x the stage's (decoded) images; coresets: 0."""
    name = recipe.method.name
    if not hf_condense.METHODS[name].capabilities.synthetic:
        return 0
    total, union = 0, 0
    for k, own in enumerate(sizes, start=1):
        union += own
        m = recipe.stage_method(k)
        student = union if recipe.stages.use_conditioning else own
        if name == "mtt":  # default batch: classes x the stage's IPC (its own count), drawn from the student's set
            total += m.iterations * m.syn_steps * min(m.batch_syn or own, student)
        elif name == "ratbptt":
            total += m.iterations * (m.window + m.horizon) // 2 * min(m.batch_syn or student, student)
        elif name == "dm":
            total += m.iterations * own
        elif name == "idc":
            total += m.iterations * m.inner_loop * own
        else:  # DC / DSA: matching rounds, inner epochs on the student's set between them
            outer, inner = default_loops(recipe.stages.ipc_of(k))
            total += m.iterations * (m.outer_loop or outer) * (own + (m.inner_loop or inner) * student)
    return int(total)


def cumulative(ipcs: list[int], scores: list) -> list[list]:
    """Per stage [cumulative IPC, mean %, std %] from the stages' own IPCs and their (mean, std) fractions."""
    out, total = [], 0
    for ipc, (m, sd) in zip(ipcs, scores):
        total += ipc
        out.append([total, round(100 * m, 2), round(100 * sd, 2)])
    return out


def stage_loss(stage) -> float | None:
    """The stage's loss over its last tenth of iterations (the stage log's `loss_end`; None for coresets)."""
    loss = stage.meta.get("log", {}).get("loss_end")
    return None if loss is None else round(float(loss), 4)


def seed_record(result: hf_condense.RunResult, recipe: hf_condense.Recipe, seed: int, seconds: float, resumed: bool):
    """What the results keep of one finished row and seed (accuracies in %)."""
    stages = result.stages
    rand = result.random_real[-1] if result.random_real else None
    acc, std = result.distilled[-1]
    return {
        "seed": seed,
        "status": "ok",
        "acc": round(100 * acc, 2),
        "std": round(100 * std, 2),
        "networks": recipe.evaluation.runs,
        "random_real": round(100 * rand[0], 2) if rand else None,
        "ior": round(100 * (acc - rand[0]), 2) if rand else None,
        "whole_data": [round(100 * v, 2) for v in result.whole_data] if result.whole_data else None,
        "whole_data_epochs": recipe.evaluation.whole_data_epochs if result.whole_data else None,
        "per_stage": cumulative([s.meta["ipc"] for s in stages], result.distilled),
        "lr": round(float(stages[-1].lr), 6),
        "stage_lr": [round(float(s.lr), 6) for s in stages],  # each stage's learned step size (or its schedule's lr)
        "stage_loss": [stage_loss(s) for s in stages],  # each stage's matching loss over its last tenth of iterations
        "seconds": round(seconds, 1),
        "resumed": resumed,
        "distill_seconds": round(sum(s.meta.get("seconds", 0) for s in stages), 1),
        "image_steps": image_steps(recipe, [len(s.images) for s in stages]),
        "micro_batch": stages[-1].meta.get("log", {}).get("micro_batch"),
        "threads": torch.get_num_threads(),
        "version": hf_condense.__version__,
        "commit": commit(),
    }


def copy_start(src: Path, dst: Path, keep: int | None) -> None:
    """A finished run folder copied as the start of a longer row: its first `keep` stages (all when None)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(CHECKPOINTS, "results.json"))
    if keep is None:
        return
    for k in list_stages(dst)[keep:]:
        shutil.rmtree(dst / stage_name(k))
    folder = RunFolder(dst)
    run = folder.run_info()
    run["stage_hashes"] = run["stage_hashes"][:keep]
    write_json(folder.run_json, run)


def run_row(table: Table, row: Row, seed: int, runs: Path, saved: dict | None, retry: bool) -> dict:
    """Run (or resume) one row and seed, unless `saved` (its record in the results) finished this very recipe (a
    failed one is retried when `retry`); a failure or divergence is recorded, not raised."""
    folder = row_folder(runs, table.name, row.name, seed)
    recipe = recipe_of(row, seed, folder, runs / table.name / "cache")
    key = recipe_key(recipe)
    if saved is not None and saved.get("recipe_key") == key and (saved["status"] == "ok" or not retry):
        return saved
    if row.start_from and not folder.exists():
        src = row_folder(runs, row.start_from.get("table", table.name), row.start_from["row"], seed)
        if (src / "run.json").is_file():
            copy_start(src, folder, row.start_from.get("stages"))
    resumed = RunFolder(folder).has_progress()  # then this sitting's time is not the row's whole time
    print(f"== {table.name}: {row.name}, seed {seed} -> {folder}", flush=True)
    t0 = time.perf_counter()
    try:
        result = hf_condense.run(recipe)
    except Exception as e:  # the stop rule: a row that fails or diverges is reported as such
        if exit_code(e) in (None, 2) or os.environ.get("HF_CONDENSE_DEBUG") == "1":
            raise  # a bug, or bad input that the up-front check missed: stop the table
        print(f"   {row.name}, seed {seed}: {type(e).__name__}: {e}", flush=True)
        return {"seed": seed, "status": f"{type(e).__name__}: {e}", "recipe_key": key, "commit": commit()}
    return {**seed_record(result, recipe, seed, time.perf_counter() - t0, resumed), "recipe_key": key}


def summary(row: Row, recipe: hf_condense.Recipe, records: list[dict]) -> dict:
    """A row's results: its seeds' records and their mean (± std over networks, or over seeds when several)."""
    records = [r for r in records if r["seed"] < row.seeds]
    ok = [r for r in records if r.get("status") == "ok"]
    out = {
        "name": row.name,
        "recipe": str(row.recipe.relative_to(ROOT)),
        "overrides": row.overrides,
        "method": recipe.method.name,
        "scheme": recipe.stages.scheme if recipe.stages.count > 1 else None,
        "stages": recipe.stages.count,
        "ipc": sum(recipe.stages.ipc_of(k) for k in range(1, recipe.stages.count + 1)),
        "reference": row.reference,
        "curve": row.curve,
        "note": row.note,
        "seeds": records,
    }
    if ok:
        accs = torch.tensor([r["acc"] for r in ok])
        iors = [r["ior"] for r in ok if r.get("ior") is not None]
        whole = [r["seconds"] for r in ok if r.get("seconds") and not r.get("resumed")]
        times = whole or [r["seconds"] for r in ok if r.get("seconds")]  # a resumed seed timed its last sitting only
        out.update(
            acc=round(float(accs.mean()), 2),
            std=round(float(accs.std()), 2) if len(ok) > 1 else ok[0]["std"],
            std_over="seeds" if len(ok) > 1 else "networks",
            ior=round(sum(iors) / len(iors), 2) if iors else None,
            seconds=round(sum(times) / len(times)) if times else None,
            seconds_resumed=bool(times) and not whole,
            image_steps=ok[0]["image_steps"],
        )
    return out


def read_results(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {"rows": []}


def checked_recipes(table: Table, runs: Path) -> dict[str, hf_condense.Recipe]:
    """Every row's recipe, parsed before any compute: a bad override is refused now (one line naming the row and
    the key), not after hours of the rows before it."""
    out = {}
    for row in table.rows:
        try:
            out[row.name] = recipe_of(row, 0, runs / "check", runs / "check")
        except RecipeError as e:
            fail(f"{table.name}: row {row.name!r}: {'; '.join(e.errors)}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/run.py", description=__doc__.split("\n")[0])
    p.add_argument("table", help="a table name under benchmarks/tables/ (or a path to a table YAML)")
    p.add_argument("rows", nargs="*", help="row names to run (all when none)")
    p.add_argument("--runs", type=Path, default=RUNS, help="where rows run (default benchmarks/runs)")
    p.add_argument("--results", type=Path, default=RESULTS, help="where results go (default benchmarks/results)")
    p.add_argument("--report", action="store_true", help="rewrite the report from the saved results; run nothing")
    args = p.parse_args(argv)
    return guarded(lambda: run_table(args))


def run_table(args: argparse.Namespace) -> None:
    table = load_table(args.table)
    unknown = [r for r in args.rows if r not in {x.name for x in table.rows}]
    if unknown:
        fail(f"{table.name}: no row named {unknown[0]!r}; rows: {', '.join(x.name for x in table.rows)}")
    recipes = checked_recipes(table, args.runs)
    path = args.results / f"{table.name}.json"
    saved = {r["name"]: r for r in read_results(path)["rows"]}

    def write() -> None:
        rows = [summary(row, recipes[row.name], saved.get(row.name, {}).get("seeds", [])) for row in table.rows]
        results = {"table": table.name, "title": table.title, "profile": table.profile, "summary": table.summary}
        results["rows"] = rows
        args.results.mkdir(parents=True, exist_ok=True)
        write_json(path, results)
        write_report(results, args.results / table.name)
        if table.summary and args.results == RESULTS:
            tables = sorted(TABLES.glob("*.yaml"))
            write_summary(ROOT / "docs" / "benchmarks.md", [read_results(RESULTS / f"{t.stem}.json") for t in tables])

    picked = [] if args.report else [row for row in table.rows if not args.rows or row.name in args.rows]
    for seed in range(max((row.seeds for row in picked), default=0)):  # every row's seed 0 first, then the spread
        for row in picked:
            if seed >= row.seeds:
                continue
            kept = {r["seed"]: r for r in saved.get(row.name, {}).get("seeds", [])}
            kept[seed] = run_row(table, row, seed, args.runs, kept.get(seed), row.name in args.rows)
            saved[row.name] = {"seeds": [kept[s] for s in sorted(kept)]}
            write()
    write()


if __name__ == "__main__":
    sys.exit(main())
