"""Recipes: YAML, then `key.path=value` overrides, then typed dataclasses, then validation.

A recipe gathers the sections each layer owns (dataset, preprocess, augment, model, method) with the ones the stage
engine reads (stages, evaluation, output). Every error is collected and reported together, one line each, naming the
dotted path, the bad value and what is allowed, before any download or compute starts.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import shutil
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from ..core.config import (
    RecipeError,
    added_fields,
    apply_overrides,
    describe,
    later_stage_fields,
    neutral_fields,
    opt,
    parse_dataclass,
    suggest,
)
from ..core.paths import expect_file, unwritable
from ..data.augment import AugmentConfig, parse_strategy
from ..data.preprocess import PreprocessConfig
from ..data.sources import DIGITS, DatasetConfig, RealData
from ..methods import METHODS, MethodConfig, Probe
from ..methods.context import CACHE_VARIABLE, default_cache_dir
from ..models import ModelConfig, build_model, model_names
from ..models.chunking import MICRO_BATCH_HELP
from ..models.compiling import COMPILE_HELP, COMPILE_MIN_EXAMPLES
from ..models.functional import buffer_free
from ..models.training import TrainSchedule
from . import catalogue, compute


@dataclass
class StagesConfig:
    """Progressive (multi-stage) distillation; a single-stage run is a one-stage progressive run."""

    count: int = opt(1, min=1, help="Number of stages P.")
    ipc: int | list[int] = opt(10, min=1, help="Images per class per stage: one number, or one per stage.")
    scheme: Literal["pdd", "seqmatch", "boost", "independent"] = opt(
        "pdd",
        help="pdd: frozen earlier stages + transitions; seqmatch: per-stage trajectory segments; "
        "boost: earlier blocks keep training at lr x boost_beta; independent: no conditioning, no transition.",
    )
    transition: bool | None = opt(
        None,
        help="Start each stage from weights trained on earlier stages (default: on for pdd and seqmatch).",
        later_stages=True,
    )
    conditioning: bool | None = opt(
        None, help="Student trains on earlier stages plus the current one (default: on, except for independent)."
    )
    boost_beta: float = opt(0.0, min=0, max=1, help="boost scheme: lr factor for earlier blocks (0 = frozen).")
    curriculum: Literal["none", "forgetting", "forgetting_quantile"] = opt(
        "none",
        help="forgetting: stage i draws only on real examples with forgetting score in "
        "[band x (i-1), band x i) (PDD section 4.2); forgetting_quantile: on the i-th of P equal slices of each "
        "class ranked by score (for skewed scores); the last band is open-ended.",
    )
    curriculum_scope: Literal["init", "real"] | None = opt(
        None,
        help="init: the band only chooses the real images a stage's images start from (coresets: select from), as "
        "the public PDD + MTT code does; real: it also restricts the real data the stage matches (experts, real "
        "batches, the networks' real training), as its PDD + IDC code does. Default: the method's own (real for idc, "
        "init otherwise).",
    )
    forgetting_band: float = opt(3.0, gt=0, help="Width of each stage's forgetting-score band (3 in the paper).")
    forgetting_epochs: int = opt(10, min=1, help="Epochs of the pass that counts forgetting events.")
    overrides: list[dict[str, Any]] = opt(
        default_factory=list, help="Per-stage method overrides, one mapping per stage."
    )

    def ipc_of(self, stage: int) -> int:
        """Images per class of stage `stage` (1-based)."""
        return self.ipc if isinstance(self.ipc, int) else self.ipc[stage - 1]

    @property
    def use_transition(self) -> bool:
        return self.transition if self.transition is not None else self.scheme in ("pdd", "seqmatch")

    @property
    def use_conditioning(self) -> bool:
        return self.conditioning if self.conditioning is not None else self.scheme != "independent"


EvalMode = Literal["progressive", "union", "sequential"]
SCHEME_EVAL_MODE = {"boost": "union"}  # a scheme's natural evaluation when the recipe names none
EVAL_MODES: tuple[str, ...] = typing.get_args(EvalMode)  # for command lines that pick one


@dataclass
class EvalConfig:
    """The standard evaluation protocol (DC/DSA/DM/MTT): fresh networks trained on the distilled set."""

    runs: int = opt(5, min=1, help="Networks per evaluation, each with its own initialisation.")
    epochs: int = opt(1000, min=1, help="Epochs per stage (lr x 0.1 at half).")
    batch_size: int = opt(256, min=1, help="Minibatch size.")
    lr: float = opt(0.01, gt=0, help="Learning rate when the method does not learn one.")
    momentum: float = opt(0.9, min=0, max=1, help="SGD momentum.")
    weight_decay: float = opt(5e-4, min=0, help="SGD weight decay.")
    augment: bool = opt(True, help="DSA on every batch.")
    vectorize: bool = opt(
        False,
        help="Train a process's runs together with torch.func.vmap (buffer-free models; slower on a CPU: "
        "benchmarks/results/vectorized_eval.md).",
        compute="eval_vectorize",
    )
    mode: EvalMode | None = opt(
        None,
        help="progressive: S1, then S1 u S2, ... carrying weights and optimiser state; "
        "union: fresh network per cumulative union; sequential: S1, then S2 alone, ...; default: the scheme's own "
        "(union for boost, whose paper evaluates each nested prefix from scratch; progressive otherwise).",
    )
    random_real: bool = opt(True, help="Also train on random real images of the same budget.")
    whole_data: bool = opt(False, help="Also train on the whole train split.")
    whole_data_epochs: int = opt(30, min=1, help="Epochs for the whole-data reference.")
    models: list[str] = opt(
        default_factory=list,
        help="Other architectures (ConvNet or timm names) trained on every stage beside the run's model, with random "
        "real images too when random_real is on: the cross-architecture columns of the table, results and card.",
    )
    test_batch_size: int = opt(1024, min=1, help="Batch size for test-set inference.")
    every: int = opt(
        0, min=0, help="During distillation, test the images every this many iterations (0: never); logged."
    )
    every_epochs: int = opt(
        100,
        min=1,
        help="Epochs of that periodic test: one network, trained on the earlier stages as the evaluation's mode "
        "trains them, then this many epochs with the stage's current images.",
    )
    select: Literal["last", "validation"] = opt(
        "last",
        help="Which iterate a stage keeps. last: the final one. validation: the periodic tests (`every`) run on a "
        "class-balanced validation split held out from the train split (never the test split) and the stage keeps "
        "the images and step size of the best one (the MTT/PDD code selects on the test split instead).",
    )
    validation_per_class: int = opt(100, min=1, help="select: validation: train examples per class held out for it.")
    micro_batch: int | None = opt(
        None,
        min=0,
        help=f"{MICRO_BATCH_HELP} of every network trained on a stage (evaluation, PDD transitions, inner loops; "
        "default: chosen from device and shapes; 0: whole batch).",
        compute="eval_micro_batch",
    )
    compile: bool | None = opt(
        None,
        help=f"{COMPILE_HELP} of every network trained on a stage (default: on a CPU for narrow networks, such as "
        f"ConvNet-D3W32, that train at least {COMPILE_MIN_EXAMPLES:,} examples, epochs x set size; eager on GPUs).",
        compute="eval_compile",
    )

    def schedule(self) -> TrainSchedule:
        """The training schedule of the protocol, which distillation also trains networks with (PDD transitions,
        inner loops): what of this section shapes a stage."""
        names = [f.name for f in dataclasses.fields(TrainSchedule) if hasattr(self, f.name)]
        return TrainSchedule(**{name: getattr(self, name) for name in names})

    def probe(self) -> Probe:
        """The periodic tests during distillation."""
        return Probe(self.every, self.every_epochs, self.test_batch_size, self.select, self.mode or "progressive")


@dataclass
class OutputConfig:
    """Where results go."""

    dir: str = opt("outputs/run", help="Output folder, laid out like a Hub dataset repo.")
    push_to_hub: bool = opt(False, help="Upload each stage as a config of `repo_id`.")
    repo_id: str | None = opt(None, help="Hub dataset repo, e.g. org/cifar10-pdd.")
    private: bool = opt(False, help="Create the Hub repo as private.")
    cache_dir: str | None = opt(None, help="Cache for experts, ZCA and scores (default ~/.cache/hf_condense).")
    log_with: list[str] = opt(
        default_factory=list,
        help="Accelerate trackers (tensorboard, wandb, ...; `pip install hf_condense[trackers]`) under <dir>/logs: "
        "distillation losses, periodic tests, experts' and evaluation networks' per-epoch loss and accuracy, and the "
        "per-stage accuracies and DD-Ranking scores.",
    )


PROBE_START = (
    "the validation probes of stages after the first start from the networks the evaluation trains on the earlier "
    "stages (they trained a fresh network on the union)"
)
MAX_SEED = (2**32 - 1) // 1000 - 1  # stage k seeds everything with seed x 1000 + k, which numpy takes below 2**32


@dataclass
class Recipe:
    """A whole run."""

    dataset: DatasetConfig = opt(default_factory=DatasetConfig)
    preprocess: PreprocessConfig = opt(default_factory=PreprocessConfig)
    model: ModelConfig = opt(default_factory=ModelConfig)
    augment: AugmentConfig = opt(default_factory=AugmentConfig)
    method: MethodConfig = opt(default_factory=MethodConfig)
    stages: StagesConfig = opt(default_factory=StagesConfig)
    evaluation: EvalConfig = opt(default_factory=EvalConfig)
    output: OutputConfig = opt(default_factory=OutputConfig, affects_result=False)  # where, not what
    seed: int = opt(0, min=0, max=MAX_SEED, help="Seed of everything.")
    threads: int = opt(
        0,
        min=0,
        affects_result=False,
        compute="threads",
        help="torch CPU threads per process (0: HF_CONDENSE_THREADS, else OMP_NUM_THREADS outside accelerate "
        "launch, else this machine's cores shared among its processes). Results match to float round-off across "
        "thread counts, bit for bit at equal ones.",
    )
    tf32: bool = opt(
        False,
        affects_result=False,  # like the device: how the arithmetic runs, recorded in run.json, not what is computed
        compute="tf32",
        help="CUDA matmuls and cuDNN convolutions in TF32 (faster on Ampere and later GPUs; CPUs unaffected). Off by "
        "default: an H100 MTT run diverged under cuDNN's default TF32 convolutions at an lr_lr that is stable in "
        "float32 (unroll gradients under TF32: benchmarks/results/unroll_memory_cuda.md).",
    )

    def to_dict(self) -> dict[str, Any]:
        """Every field where it lives (what the stage hash reads)."""
        return dataclasses.asdict(self)

    def public_dict(self) -> dict[str, Any]:
        """The recipe as a user writes it: the execution settings under `compute:` (stages/compute.py)."""
        return compute.public(self.to_dict(), compute_homes(type(self.method)))

    def distill_hash(
        self,
        stages: int | None = None,
        revision: int | None = None,
        probe_start: bool = True,
        first_alone: bool = True,
    ) -> str:
        """Hash of everything that shapes the images of stages 1..`stages` (default: all of them).

        Later stages' settings and the stage count are left out, so a run extended with more stages keeps its
        earlier ones; of the evaluation settings only the schedule a stage task carries counts (`schedule()`), so
        changing `runs`, `mode` or extra models keeps the stages. The first stage alone reads the settings declared
        `later_stages` (transitions) at their defaults, so recipes that differ only there share it (`first_alone`
        False: as before that rule). The method's revision (default: the current one) counts from its first: a method
        never revised hashes as before the key existed. `probe_start` False: the hash from before validation probes
        of later stages started from the earlier stages' networks (PROBE_START).
        """
        k = self.stages.count if stages is None else stages
        revision = METHODS[self.method.name].revision if revision is None else revision
        d = self.to_dict()
        if revision:
            d["method_revision"] = revision
        d["preprocess"] = self.preprocess.key()
        for name in neutral_fields(Recipe):  # output, threads, tf32: the same images up to float round-off
            d.pop(name)
        d["evaluation"] = self.evaluation.schedule().key()
        ev = self.evaluation
        if ev.select != "last":  # the selection then shapes the stage, with the tests it selects on
            d["evaluation"]["select"] = [ev.select, ev.validation_per_class, ev.every, ev.every_epochs]
            if probe_start and k > 1:  # later stages' probes start where this mode's evaluation leaves the earlier
                d["evaluation"]["select"].append(ev.mode)
        st = d["stages"]
        st.pop("count")
        neutral = neutral_fields(type(self.method))  # declared in the method's config (affects_result)
        # no transition before stage 1: alone, it reads the transition settings at their defaults
        first_defaults = later_stage_fields(type(self.method)) if k == 1 and first_alone else {}
        if first_defaults:
            st.update(later_stage_fields(StagesConfig))
            d["method"].update(first_defaults)
        if st["curriculum"] == "none":  # no effect without a curriculum: folders made before the key still resume
            st.pop("curriculum_scope")
        else:  # the scope in force, hashed as the value that was the default before methods declared their own
            st["curriculum_scope"] = self.curriculum_scope
        # transition_mode pool is what came before the key, and stage 1 has no transition: their hashes stay
        for m in [d["method"], *st["overrides"]]:
            if m.get("transition_mode") == "pool" or k == 1 or not self.stages.use_transition:
                m.pop("transition_mode", None)
            for name in neutral:
                m.pop(name, None)
            for name, default in added_fields(type(self.method)).items():  # at its default: hashed as before it
                if m.get(name, default) == default:
                    m.pop(name, None)
            if m.get("expert_lr", 0) is None:  # the experts train at lr_teacher, as before the key existed
                m.pop("expert_lr")
            if m.get("vectorize_trajectories", False) is None:  # automatic: hashed as the False it replaced
                m["vectorize_trajectories"] = False
        if METHODS[self.method.name].stage_config:  # stages resolved from the count too: hash what they resolve to
            d["stage_methods"] = [dataclasses.asdict(self.stage_method(i)) for i in range(1, k + 1)]
            for m in d["stage_methods"]:
                for name in neutral:
                    m.pop(name, None)
                m.update(first_defaults)
        st["ipc"] = [self.stages.ipc_of(i) for i in range(1, k + 1)]
        own = [self.stages.overrides[i] if i < len(self.stages.overrides) else {} for i in range(k)]
        st["overrides"] = [{n: v for n, v in o.items() if n not in first_defaults} for o in own]
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def curriculum_scope(self) -> str:
        """The forgetting curriculum's scope in force: the recipe's, else the one the method's official code uses."""
        return self.stages.curriculum_scope or METHODS[self.method.name].curriculum_scope

    def stage_hashes(self) -> list[str]:
        """distill_hash of each stage prefix 1..k: what a run folder records to be resumed or extended."""
        return [self.distill_hash(k) for k in range(1, self.stages.count + 1)]

    def equivalent_hashes(self) -> list[set[str]]:
        """Per stage prefix, the other hashes of the very same stages: stage 1 as hashed before it read the
        transition settings at their defaults. A folder holding one resumes (and is rewritten with today's)."""
        first = self.distill_hash(1, first_alone=False)
        return [{first} - {self.distill_hash(1)}] + [set() for _ in range(1, self.stages.count)]

    def earlier_hashes(self) -> list[dict[str, str]]:
        """Per stage prefix, the hashes earlier releases gave this recipe (earlier revisions of the method, probes
        before PROBE_START), each with what changed since: a folder holding one is refused with that reason rather
        than as another recipe's."""
        revisions = METHODS[self.method.name].revisions
        out = []
        for k in range(1, self.stages.count + 1):
            probes = (True, False) if self.evaluation.select == "validation" and k > 1 else (True,)
            changes = {
                (r, p): [*revisions[r:], *([] if p else [PROBE_START])]
                for r in range(len(revisions) + 1)
                for p in probes
            }
            out.append({self.distill_hash(k, r, p): "; ".join(c) for (r, p), c in changes.items() if c})
        return out

    def stage_method(self, stage: int) -> MethodConfig:
        """The method config of stage `stage` (1-based), with that stage's overrides applied, then what the method
        makes of a stage of this many (`MethodSpec.stage_config`)."""
        own = self.stages.overrides[stage - 1] if stage <= len(self.stages.overrides) else {}
        out = self.method
        if own:
            errors: list[str] = []
            out = parse_dataclass(type(self.method), {**dataclasses.asdict(self.method), **own}, "method", errors)
            if errors:
                raise RecipeError(errors)
        per_stage = METHODS[self.method.name].stage_config
        return per_stage(out, stage, self.stages.count, set(own)) if per_stage else out


def repo_id_errors(repo_id: str, key: str = "output.repo_id") -> list[str]:
    """Static check of a Hub repo id (no network)."""
    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        return [f"{key}: {repo_id!r} is not a valid Hub repo id ({str(e).splitlines()[0]})"]
    return []


def tracker_errors(names: list[str]) -> list[str]:
    """Each tracker must be one Accelerate knows and whose package is installed."""
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS, get_available_trackers

    available = {str(getattr(t, "value", t)) for t in get_available_trackers()}
    errors = []
    for name in names:
        if name not in LOGGER_TYPE_TO_CLASS:
            errors.append(
                f"output.log_with: {name!r} is not an Accelerate tracker{suggest(name, LOGGER_TYPE_TO_CLASS)}"
            )
        elif name not in available:
            errors.append(
                f"output.log_with: {name!r} is not installed here (pip install {name}, or hf_condense[trackers])"
            )
    return errors


def check_recipe(recipe: Recipe) -> list[str]:
    """Cross-field checks that need no data."""
    errors = []
    if recipe.evaluation.select == "validation" and not recipe.evaluation.every:
        errors.append("evaluation.select: 'validation' selects among periodic tests; set evaluation.every (> 0)")
    st = recipe.stages
    if isinstance(st.ipc, list) and len(st.ipc) != st.count:
        errors.append(
            f"stages.ipc: has {len(st.ipc)} entries but stages.count is {st.count}; give one number or one per stage"
        )
    if len(st.overrides) > st.count:
        errors.append(f"stages.overrides: has {len(st.overrides)} entries but stages.count is {st.count}")
    for i, ov in enumerate(st.overrides):
        sub: list[str] = []
        parse_dataclass(type(recipe.method), {**dataclasses.asdict(recipe.method), **ov}, "method", sub)
        errors += [e.replace("method.", f"stages.overrides[{i}].", 1) for e in sub]
        if "name" in ov:
            errors.append(f"stages.overrides[{i}].name: the method cannot change between stages")
    if recipe.output.push_to_hub and not recipe.output.repo_id:
        errors.append("output.repo_id: required when output.push_to_hub is true (e.g. 'my-org/cifar10-pdd')")
    if recipe.output.repo_id:
        errors += repo_id_errors(recipe.output.repo_id)
    errors += tracker_errors(recipe.output.log_with)
    errors += cache_errors(recipe.output.cache_dir)
    if st.scheme == "boost" and st.boost_beta > 0 and not st.use_conditioning:
        errors.append("stages.boost_beta: > 0 needs conditioning (earlier blocks must be in the student's set)")
    try:
        parse_strategy(recipe.augment.strategy)
    except ValueError as e:
        errors.append(f"augment.strategy: {e}")
    errors += model_name_errors("model.name", [recipe.model.name])
    errors += model_name_errors("evaluation.models", recipe.evaluation.models)
    if not errors:  # method checks read per-stage configs, which need valid overrides
        errors += method_errors(recipe)
    return errors


def cache_errors(cache_dir: str | None) -> list[str]:
    """The cache of experts, ZCA fits and scores must be a folder that can be written, checked before any compute:
    `output.cache_dir`, else HF_CONDENSE_CACHE, else the default under the home folder."""
    key = "output.cache_dir" if cache_dir else (CACHE_VARIABLE if os.environ.get(CACHE_VARIABLE) else "cache")
    why = unwritable(cache_dir or default_cache_dir(), key)
    return [why] if why else []


def model_name_errors(key: str, names: list[str]) -> list[str]:
    """One line per architecture name that timm (with the ConvNet family registered) cannot build."""
    known = model_names()
    return [
        f"{key}: {name!r} is not a timm model{suggest(name, known)}; see timm.list_models()"
        for name in names
        if name not in known
    ]


def method_errors(recipe: Recipe) -> list[str]:
    """The method's own checks of each stage's config (tagged with the stage), and what its capabilities need."""
    spec = METHODS[recipe.method.name]
    beta = recipe.stages.boost_beta if recipe.stages.scheme == "boost" else 0.0
    errors = [
        f"{e} (stage {k})" for k in range(1, recipe.stages.count + 1) for e in spec.check(recipe.stage_method(k), beta)
    ]
    if spec.capabilities.functional:
        errors += functional_model_errors(recipe)
    return errors


def functional_model_errors(recipe: Recipe) -> list[str]:
    """A method that unrolls its network functionally needs one without running statistics. Checked on the model as
    built (on the meta device: no memory, no compute), whether a name or `model.kwargs` chose its normalisation."""
    try:
        with torch.device("meta"):
            model = build_model(recipe.model, 10, 3, 32)
    except (TypeError, ValueError, RuntimeError):  # a shape or kwargs problem: data_errors names it with the data
        return []
    if buffer_free(model):
        return []
    kinds = sorted({type(m).__name__ for m in model.modules() if next(m.buffers(recurse=False), None) is not None})
    return [
        f"model.name: {recipe.model.name!r} keeps running statistics ({', '.join(kinds)}), which the functional "
        f"unroll of {recipe.method.name} cannot update; choose a model without them (a convnet_* model, or "
        "model.kwargs.norm: instance)"
    ]


def data_errors(recipe: Recipe, data: RealData) -> list[str]:
    """Recipe checks that need the data: classes, the model on these images, IPC against the smallest class, and
    room on disk for the stages."""
    counts = data.class_counts()
    if data.num_classes < 2:
        return [
            f"dataset.label_column: split {recipe.dataset.train_split!r} has {data.num_classes} class(es) with "
            "examples; distillation needs at least two"
        ]
    if len(data.test_y) == 0:
        return [f"dataset.test_split: split {recipe.dataset.test_split!r} has no example of the train classes"]
    errors = model_errors(recipe.model, data)
    for name in recipe.evaluation.models:  # cross-architecture models train on the same images
        errors += [e.replace("model.name", "evaluation.models") for e in model_errors(ModelConfig(name=name), data)]
    smallest = int(counts.min())
    st = recipe.stages
    per_stage = [st.ipc_of(i) for i in range(1, st.count + 1)]
    total = sum(per_stage)
    if total > smallest:
        errors.append(
            f"stages.ipc: {st.count} stage(s) x {per_stage} = {total} images per class, but the "
            f"smallest class of split {recipe.dataset.train_split!r} has {smallest}"
        )
    return errors + disk_errors(recipe, total * data.num_classes * data.train_x[0].numel())


def model_errors(model: ModelConfig, data: RealData) -> list[str]:
    """The recipe's model must build for these images (depth against image size, `model.kwargs` it accepts)."""
    try:
        build_model(model, data.num_classes, data.in_chans, data.img_size)
    except TypeError as e:
        return [f"model.kwargs: {model.name} does not take {dict(model.kwargs)} ({e})"]
    except (ValueError, RuntimeError) as e:
        return [f"model.name: {model.name!r} cannot be built for {tuple(data.train_x.shape[1:])} images ({e})"]
    return []


def disk_errors(recipe: Recipe, values: int) -> list[str]:
    """Refuse a run whose output folder's disk cannot hold its stages: `values` float32 numbers, written about
    three times over (parquet, previews, in-stage checkpoints), plus 32 MB for the card, figures and recipe."""
    need = 3 * 4 * values + (32 << 20)
    where = Path(recipe.output.dir).absolute()
    while not where.exists():
        where = where.parent
    free = shutil.disk_usage(where).free
    if free < need:
        return [f"output.dir: only {free / 2**20:.0f} MB free on {where}; this run needs about {need / 2**20:.0f} MB"]
    return []


def load_recipe(source: str | Path | dict, overrides: typing.Sequence[str] = (), notes: bool = True) -> Recipe:
    """Read a recipe from a YAML file (or a dict), apply overrides, parse and validate it. An earlier spelling of an
    execution setting is read as its `compute:` key with a one-line note on stderr (`notes=False`: silently, for the
    recipe a run folder stored)."""
    if isinstance(source, dict):
        data = json.loads(json.dumps(source))
    else:
        path = Path(source)
        if not path.exists():  # a shipped recipe's name (`hf-condense recipes` lists them)
            path = catalogue.find(str(source)) or path
        why = expect_file(path, "a recipe YAML file or a shipped recipe's name (`hf-condense recipes` lists them)")
        if why:
            raise RecipeError([why])
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            raise RecipeError([f"{path}: not a text file; a recipe is YAML (see recipes/)"]) from None
        if not text.strip():
            raise RecipeError([f"{path}: the recipe is empty; it needs a dataset and a method section (see recipes/)"])
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise RecipeError([f"{path}: malformed YAML{where}: {getattr(e, 'problem', e)}"]) from None
        if not isinstance(data, dict):
            raise RecipeError([f"{path}: expected a mapping of sections at the top level, got {type(data).__name__}"])
    data = apply_overrides(data, overrides)
    method = data.get("method") if isinstance(data.get("method"), dict) else {}
    name = method.get("name")
    spec = METHODS.get(name) if isinstance(name, str) else None
    own = compute_homes(spec.config_class if spec else MethodConfig)
    said, placing = compute.place(data, own, all_compute_keys(), name)
    errors: list[str] = []
    recipe = parse_dataclass(Recipe, data, "", errors)
    if not errors and not placing:
        if recipe.evaluation.mode is None:
            recipe.evaluation.mode = SCHEME_EVAL_MODE.get(recipe.stages.scheme, "progressive")
        errors += check_recipe(recipe)
    if errors or placing:
        raise RecipeError(placing + [compute.public_paths(e, own) for e in errors])
    if notes:
        for line in said:
            print(f"note: {line}", file=sys.stderr)
    return recipe


def recipe_to_yaml(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe.public_dict(), sort_keys=False)


def compute_homes(method_class: type) -> dict[str, compute.Home]:
    """Where each `compute:` key of a recipe with this method's config lives."""
    return compute.homes([(None, Recipe), ("evaluation", EvalConfig), ("method", method_class)])


def all_compute_keys() -> set[str]:
    """Every `compute:` key, over every registered method."""
    return {name for spec in METHODS.values() for name in compute_homes(spec.config_class)}


def is_local_path(path: str) -> bool:
    return Path(path).expanduser().exists() or Path(path).is_absolute()


def public_recipe(d: dict) -> dict:
    """A recipe dict as it may be published: no local paths (a local dataset folder, the output folder and a local
    shared-experts folder by their names only, no cache folder). Hub ids and everything that shapes the images are
    kept."""
    d = copy.deepcopy(d)
    ds, out = d.get("dataset", {}), d.get("output", {})
    if isinstance(ds.get("path"), str) and ds["path"] != DIGITS and is_local_path(ds["path"]):
        ds["path"] = Path(ds["path"]).name
    if isinstance(out.get("dir"), str):
        out["dir"] = Path(out["dir"]).name
    if out.get("cache_dir") is not None:
        out["cache_dir"] = None
    method = d.get("method", {})
    if isinstance(method.get("experts"), str) and is_local_path(method["experts"]):  # shared experts' folder
        method["experts"] = Path(method["experts"]).name
    return d


def recipe_sections() -> list[tuple[str, str]]:
    """The recipe's top-level keys, each with what it holds (its config's docstring, or its help), in order."""
    hints = typing.get_type_hints(Recipe)
    out = []
    for f in dataclasses.fields(Recipe):
        if f.metadata.get("compute"):  # listed within the compute section
            continue
        cls = hints[f.name]
        text = (cls.__doc__ or "").strip().split("\n")[0] if dataclasses.is_dataclass(cls) else f.metadata["help"]
        if f.name == "method":
            text = f"The base method: `name` is one of {', '.join(METHODS)}; its other keys are that method's own"
        out.append((f.name, text.split(". ")[0].rstrip(".") + "."))
        if f.name == "evaluation":
            out.append(
                (
                    compute.SECTION,
                    "Execution settings: threads, TF32, micro-batching, compilation, the unroll's memory.",
                )
            )
    return out


NEUTRAL_NOTE = " *Result-neutral: not in the stage hash; a folder resumes under another value.*"


def recipe_reference() -> str:
    """The recipe reference (docs/reference/recipe.md), generated from the config dataclasses (defaults and help live
    only there)."""

    def row(key: str, cls: type, f: dataclasses.Field, note: str = "") -> str:
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        help = f.metadata.get("help", "") + note + ("" if f.metadata.get("affects_result", True) else NEUTRAL_NOTE)
        return f"| `{key}` | {describe(typing.get_type_hints(cls)[f.name])} | `{default!r}` | {help} |"

    def rows(cls: type, prefix: str) -> list[str]:
        hints = typing.get_type_hints(cls)
        out = []
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(hints[f.name]) or (prefix == "method." and f.name == "name"):
                continue
            if f.metadata.get("compute"):  # listed under compute.*
                continue
            out.append(row(f"{prefix}{f.name}", cls, f))
        return out

    def compute_rows() -> list[str]:
        users: dict[str, tuple[type, str, list[str]]] = {}  # compute key -> (its config class, field, methods)
        for method, spec in METHODS.items():
            classes = {None: Recipe, "evaluation": EvalConfig, "method": spec.config_class}
            for key, (section, name) in compute_homes(spec.config_class).items():
                users.setdefault(key, (classes[section], name, []))[2].extend([method] if section == "method" else [])
        out = [f"| **`{compute.SECTION}`** | | | |"]
        for key, (cls, name, methods) in users.items():
            f = next(f for f in dataclasses.fields(cls) if f.name == name)
            note = f" *Methods: {', '.join(sorted(methods))}.*" if methods else ""
            out.append(row(f"{compute.SECTION}.{key}", cls, f, note))
        return out

    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    hints = typing.get_type_hints(Recipe)
    for f in dataclasses.fields(Recipe):
        if f.name != "method" and dataclasses.is_dataclass(hints[f.name]):
            lines += rows(hints[f.name], f"{f.name}.")
    lines += rows(Recipe, "")
    lines += compute_rows()
    seen: set[type] = set()
    for spec in METHODS.values():
        if spec.config_class in seen:
            continue
        seen.add(spec.config_class)
        names = " / ".join(n for n, s in METHODS.items() if s.config_class is spec.config_class)
        extra = rows(spec.config_class, "method.")
        if extra:
            lines.append(f"| **`method.name: {names}`** | | | |")
            lines += extra
    return "\n".join(lines) + "\n"
