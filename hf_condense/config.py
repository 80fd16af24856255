"""Recipes: YAML, then `key.path=value` overrides, then typed dataclasses, then validation.

Every error is collected and reported together, one line each, naming the dotted path, the bad value and what is
allowed, before any download or compute starts.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


class RecipeError(ValueError):
    """A recipe that cannot run; `errors` holds one line per problem."""

    def __init__(self, errors: list[str]):
        self.errors = list(errors)
        super().__init__("invalid recipe:\n  - " + "\n  - ".join(self.errors))


def opt(
    default: Any = dataclasses.MISSING,
    help: str = "",
    min: float | None = None,
    gt: float | None = None,
    max: float | None = None,
    default_factory: Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field with a help text and numeric bounds that the parser enforces."""
    meta = {"help": help, "min": min, "gt": gt, "max": max}
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


# ----------------------------------------------------------------------------------------------------------------
# Recipe sections. Method sections live with their methods (hf_condense/methods/*) and subclass MethodConfig.


@dataclass
class DatasetConfig:
    """Where the real data comes from."""

    path: str = opt("sklearn/digits", help="Hub id, local folder laid out like a Hub repo, or 'sklearn/digits'.")
    name: str | None = opt(None, help="Dataset config name (e.g. 'cropped_digits' for SVHN).")
    revision: str | None = opt(None, help="Git revision of a Hub dataset.")
    train_split: str = opt("train", help="Split to distil from.")
    test_split: str = opt("test", help="Split to evaluate on.")
    image_column: str | None = opt(None, help="Image column; default: the first Image feature.")
    label_column: str | None = opt(None, help="Label column; default: the first ClassLabel feature.")


@dataclass
class PreprocessConfig:
    """How raw pixels become model inputs; distilled images live in this space."""

    normalize: bool = opt(True, help="Per-channel mean/std normalisation (ignored when zca is on, as in MTT).")
    zca: bool = opt(False, help="ZCA whitening fitted on the train split in [0, 1] (kornia).")
    zca_eps: float = opt(0.1, gt=0, help="ZCA regulariser (MTT uses 0.1).")


@dataclass
class ModelConfig:
    """The network, named as in timm's registry (the built-in ConvNets are registered there)."""

    name: str = opt("convnet_d3w128", help="timm model name, e.g. convnet_d3w128, test_convnet, resnet18.")
    kwargs: dict[str, Any] = opt(default_factory=dict, help="Extra keyword arguments for timm.create_model.")
    small_stem: bool = opt(False, help="ResNets: 3x3 stride-1 stem and no max-pool, for 32 px images.")


@dataclass
class AugmentConfig:
    """Differentiable siamese augmentation (DSA, Zhao & Bilen 2021)."""

    strategy: str = opt(
        "color_crop_cutout_flip_scale_rotate",
        help="Families joined by '_'; one is drawn per call. Drop 'flip' for digits.",
    )


@dataclass
class MethodConfig:
    """Base of every method's config; `name` picks the method."""

    name: str = opt("random", help="Method name (see hf_condense.METHODS).")


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
        None, help="Start each stage from weights trained on earlier stages (default: on for pdd and seqmatch)."
    )
    conditioning: bool | None = opt(
        None, help="Student trains on earlier stages plus the current one (default: on, except for independent)."
    )
    boost_beta: float = opt(0.0, min=0, max=1, help="boost scheme: lr factor for earlier blocks (0 = frozen).")
    curriculum: Literal["none", "forgetting", "forgetting_quantile"] = opt(
        "none",
        help="forgetting: stage i draws only on real examples with forgetting score in "
        "[band x (i-1), band x i) (PDD section 4.2); forgetting_quantile: on the i-th of P equal slices of each "
        "class ranked by score (for skewed scores); for MTT, the stage's experts train on them.",
    )
    forgetting_band: float = opt(3.0, gt=0, help="Width of each stage's forgetting-score band.")
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
        False, help="Train a process's runs together with torch.func.vmap (buffer-free models; 0.4x speed on CPU)."
    )
    mode: EvalMode = opt(
        "progressive",
        help="progressive: S1, then S1 u S2, ... carrying weights and optimiser state; "
        "union: fresh network per cumulative union; sequential: S1, then S2 alone, ...",
    )
    random_real: bool = opt(True, help="Also train on random real images of the same budget.")
    whole_data: bool = opt(False, help="Also train on the whole train split.")
    whole_data_epochs: int = opt(30, min=1, help="Epochs for the whole-data reference.")
    models: list[str] = opt(default_factory=list, help="Extra timm names to evaluate on (cross-architecture).")
    test_batch_size: int = opt(1024, min=1, help="Batch size for test-set inference.")
    every: int = opt(
        0, min=0, help="During distillation, test the images every this many iterations (0: never); logged."
    )
    every_epochs: int = opt(100, min=1, help="Epochs of that periodic test (one network on the union so far).")


# The evaluation settings that distillation itself uses to train networks (PDD transitions, inner loops).
DISTILL_EVAL_FIELDS = ("epochs", "batch_size", "lr", "momentum", "weight_decay", "augment")


@dataclass
class OutputConfig:
    """Where results go."""

    dir: str = opt("outputs/run", help="Output folder, laid out like a Hub dataset repo.")
    push_to_hub: bool = opt(False, help="Upload each stage as a config of `repo_id`.")
    repo_id: str | None = opt(None, help="Hub dataset repo, e.g. org/cifar10-pdd.")
    private: bool = opt(False, help="Create the Hub repo as private.")
    cache_dir: str | None = opt(None, help="Cache for experts, ZCA and scores (default ~/.cache/hf_condense).")
    log_with: list[str] = opt(
        default_factory=list, help="Accelerate trackers for losses and periodic tests: tensorboard, wandb, ..."
    )


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
    output: OutputConfig = opt(default_factory=OutputConfig)
    seed: int = opt(0, min=0, help="Seed of everything.")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def distill_hash(self, stages: int | None = None) -> str:
        """Hash of everything that shapes the images of stages 1..`stages` (default: all of them).

        Later stages' settings and the stage count are left out, so a run extended with more stages keeps its
        earlier ones; of the evaluation settings only those that train networks during distillation (transitions,
        gradient-matching inner loops) count, so changing `runs`, `mode` or extra models keeps the stages.
        """
        k = self.stages.count if stages is None else stages
        d = self.to_dict()
        d.pop("output")
        d["evaluation"] = {f: d["evaluation"][f] for f in DISTILL_EVAL_FIELDS}
        st = d["stages"]
        st.pop("count")
        st["ipc"] = [self.stages.ipc_of(i) for i in range(1, k + 1)]
        st["overrides"] = [self.stages.overrides[i] if i < len(self.stages.overrides) else {} for i in range(k)]
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def stage_hashes(self) -> list[str]:
        """distill_hash of each stage prefix 1..k: what a run folder records to be resumed or extended."""
        return [self.distill_hash(k) for k in range(1, self.stages.count + 1)]

    def stage_method(self, stage: int) -> MethodConfig:
        """The method config of stage `stage` (1-based), with that stage's overrides applied."""
        if stage > len(self.stages.overrides):
            return self.method
        errors: list[str] = []
        merged = {**dataclasses.asdict(self.method), **self.stages.overrides[stage - 1]}
        out = parse_dataclass(type(self.method), merged, "method", errors)
        if errors:
            raise RecipeError(errors)
        return out


# ----------------------------------------------------------------------------------------------------------------
# Parsing


def _suggest(word: str, options: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_describe(typing.get_args(tp)[0])}"
    if origin is dict or tp is dict:
        return "a mapping"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _check_bounds(value: Any, meta: dict, path: str, errors: list[str]) -> None:
    items = value if isinstance(value, list) else [value]
    for v in items:
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        if meta.get("min") is not None and v < meta["min"]:
            errors.append(f"{path}: {v!r} is too small; must be >= {meta['min']}")
        if meta.get("gt") is not None and v <= meta["gt"]:
            errors.append(f"{path}: {v!r} is too small; must be > {meta['gt']}")
        if meta.get("max") is not None and v > meta["max"]:
            errors.append(f"{path}: {v!r} is too large; must be <= {meta['max']}")


def _convert(tp: Any, value: Any, path: str, errors: list[str]) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return parse_dataclass(tp, value, path, errors)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            trial: list[str] = []
            out = _convert(arg, value, path, trial)
            if not trial:
                return out
        errors.append(f"{path}: expected {_describe(tp)}, got {value!r}")
        return None
    if origin is Literal:
        if value not in typing.get_args(tp):
            errors.append(
                f"{path}: {value!r} is not allowed; expected {_describe(tp)}"
                + (_suggest(value, typing.get_args(tp)) if isinstance(value, str) else "")
            )
        return value
    if origin is list:
        if not isinstance(value, list):
            errors.append(f"{path}: expected {_describe(tp)}, got {value!r}")
            return []
        (item_tp,) = typing.get_args(tp)
        return [_convert(item_tp, v, f"{path}[{i}]", errors) for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            errors.append(f"{path}: expected a mapping, got {value!r}")
            return {}
        return dict(value)
    if tp is float and isinstance(value, str) and _EXPONENT_FLOAT.fullmatch(value.strip()):
        return float(value)  # YAML 1.1 (PyYAML) reads 1e-7, without a dot, as a string
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(tp)
    if ok is None:
        raise TypeError(f"unsupported config type {tp!r} at {path}")
    if not ok:
        errors.append(f"{path}: expected {_describe(tp)}, got {value!r} ({type(value).__name__})")
        return None
    return float(value) if tp is float else value


_EXPONENT_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")


def parse_dataclass(cls: type, data: Any, path: str, errors: list[str]) -> Any:
    """Build `cls` from a mapping, appending one line per problem to `errors`."""
    if cls is MethodConfig:
        return _parse_method(data, path, errors)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        errors.append(f"{path or 'recipe'}: expected a mapping, got {data!r}")
        return cls()
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        sub = f"{path}.{key}" if path else str(key)
        if key not in known:
            errors.append(f"{sub}: unknown key{_suggest(str(key), known)}; allowed: {', '.join(known)}")
            continue
        before = len(errors)
        converted = _convert(hints[key], value, sub, errors)
        if len(errors) == before:
            _check_bounds(converted, known[key].metadata, sub, errors)
            kwargs[key] = converted
    return cls(**kwargs)


def _parse_method(data: Any, path: str, errors: list[str]) -> MethodConfig:
    from .methods import METHODS

    if data is None:
        data = {}
    if not isinstance(data, dict):
        errors.append(f"{path}: expected a mapping with a 'name' key, got {data!r}")
        return MethodConfig()
    name = data.get("name", MethodConfig.name)
    if name not in METHODS:
        errors.append(
            f"{path}.name: unknown method {name!r}{_suggest(str(name), METHODS)}; "
            f"allowed: {', '.join(sorted(METHODS))}"
        )
        return MethodConfig()
    return parse_dataclass(METHODS[name].config_class, data, path, errors)


def apply_overrides(data: dict, overrides: typing.Sequence[str]) -> dict:
    """Apply `a.b.c=value` strings to a nested dict (values parsed as YAML scalars)."""
    errors = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            errors.append(f"override {item!r}: expected key.path=value")
            continue
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part, {}), dict):
                errors.append(f"override {item!r}: {part!r} is not a section")
                break
            node = node.setdefault(part, {})
        else:
            node[parts[-1]] = yaml.safe_load(raw)
    if errors:
        raise RecipeError(errors)
    return data


def tracker_errors(names: list[str]) -> list[str]:
    """Each tracker must be one Accelerate knows and whose package is installed."""
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS, get_available_trackers

    available = {str(getattr(t, "value", t)) for t in get_available_trackers()}
    errors = []
    for name in names:
        if name not in LOGGER_TYPE_TO_CLASS:
            errors.append(
                f"output.log_with: {name!r} is not an Accelerate tracker{_suggest(name, LOGGER_TYPE_TO_CLASS)}"
            )
        elif name not in available:
            errors.append(f"output.log_with: {name!r} is not installed here (pip install {name})")
    return errors


def check_recipe(recipe: Recipe) -> list[str]:
    """Cross-field checks that need no data."""
    errors = []
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
        from .push import repo_id_errors

        errors += repo_id_errors(recipe.output.repo_id)
    errors += tracker_errors(recipe.output.log_with)
    if st.scheme == "boost" and st.boost_beta > 0 and not st.use_conditioning:
        errors.append("stages.boost_beta: > 0 needs conditioning (earlier blocks must be in the student's set)")
    from .augment import parse_strategy
    from .models import model_names

    try:
        parse_strategy(recipe.augment.strategy)
    except ValueError as e:
        errors.append(f"augment.strategy: {e}")
    if recipe.model.name not in model_names():
        errors.append(
            f"model.name: {recipe.model.name!r} is not a timm model{_suggest(recipe.model.name, model_names())}"
            "; see timm.list_models()"
        )
    for name in recipe.evaluation.models:
        if name not in model_names():
            errors.append(f"evaluation.models: {name!r} is not a timm model{_suggest(name, model_names())}")
    from .methods import METHODS

    if not errors:  # method checks read per-stage configs, which need valid overrides
        errors += METHODS[recipe.method.name].check(recipe)
    return errors


def load_recipe(source: str | Path | dict, overrides: typing.Sequence[str] = ()) -> Recipe:
    """Read a recipe from a YAML file (or a dict), apply overrides, parse and validate it."""
    if isinstance(source, dict):
        data = json.loads(json.dumps(source))
    else:
        path = Path(source)
        if not path.is_file():
            raise RecipeError([f"{path}: recipe file not found"])
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise RecipeError([f"{path}: malformed YAML{where}: {getattr(e, 'problem', e)}"]) from None
        if not isinstance(data, dict):
            raise RecipeError([f"{path}: expected a mapping of sections at the top level, got {type(data).__name__}"])
    data = apply_overrides(data, overrides)
    errors: list[str] = []
    recipe = parse_dataclass(Recipe, data, "", errors)
    if not errors:
        errors += check_recipe(recipe)
    if errors:
        raise RecipeError(errors)
    return recipe


def recipe_to_yaml(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe.to_dict(), sort_keys=False)


def recipe_reference() -> str:
    """The README's recipe reference, generated from the config dataclasses (defaults and help live only there)."""
    from .methods import METHODS

    def rows(cls: type, prefix: str) -> list[str]:
        hints = typing.get_type_hints(cls)
        out = []
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(hints[f.name]) or (prefix == "method." and f.name == "name"):
                continue
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            out.append(
                f"| `{prefix}{f.name}` | {_describe(hints[f.name])} | `{default!r}` | {f.metadata.get('help', '')} |"
            )
        return out

    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    hints = typing.get_type_hints(Recipe)
    for f in dataclasses.fields(Recipe):
        if f.name != "method" and dataclasses.is_dataclass(hints[f.name]):
            lines += rows(hints[f.name], f"{f.name}.")
    lines += rows(Recipe, "")
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
