"""What a run shares between the engine, the methods and evaluation: the data in input space, the model factory,
the augmentation, the device and the processes. It holds no recipe: a method reads its settings from its task."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from torch import nn

from ..core.io import content_key
from ..core.progress import Progress
from ..data.augment import DSA
from ..data.preprocess import PreprocessConfig, Preprocessor
from ..data.sources import RealData
from ..models import ModelConfig, build_model
from ..models.runs import ProtocolRuns, StageData, evaluate_runs
from ..models.training import TrainSchedule
from .base import SynSet


def make_accelerator(**kwargs) -> Accelerator:
    """An Accelerator that also goes multi-process on CPU-only machines under torchrun or `accelerate launch`
    without `--cpu` (Accelerate otherwise runs every process alone there, each redoing the whole job)."""
    launched = int(os.environ.get("WORLD_SIZE", 1)) > 1
    return Accelerator(cpu=launched and not torch.cuda.is_available(), **kwargs)


def cpu_threads(requested: int = 0) -> tuple[int, str]:
    """(torch CPU threads per process, where the number came from): `requested` (the recipe's `compute.threads`), else
    `HF_CONDENSE_THREADS`, else `OMP_NUM_THREADS` when set by the user, else the cores this process may use shared
    among the processes on this machine. Under `accelerate launch` OMP_NUM_THREADS is the launcher's default of 1,
    which would leave all but one core idle, so it is not read there. A chosen number above this process's share of
    the cores is kept (a recipe may name the thread count its table was made with) but said to be oversubscribed."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    local = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    share = max(1, cores // local)
    threads, source = _chosen_threads(requested) or (share, f"{cores} core(s) / {local} process(es)")
    if threads > share:
        source += f"; more than this process's {share} of {cores} core(s): oversubscribed, expect a large slowdown"
    return threads, source


def _chosen_threads(requested: int) -> tuple[int, str] | None:
    """A thread count the user chose (recipe, then environment), or None."""
    if requested:
        return requested, "recipe threads"
    for var in ("HF_CONDENSE_THREADS",) + (() if "ACCELERATE_DYNAMO_BACKEND" in os.environ else ("OMP_NUM_THREADS",)):
        value = os.environ.get(var, "")
        if value.isdigit() and int(value) > 0:
            return int(value), var
    return None


CACHE_VARIABLE = "HF_CONDENSE_CACHE"  # the environment variable naming the cache folder


def default_cache_dir() -> Path:
    """Where experts, ZCA fits and forgetting scores are cached unless a recipe says otherwise."""
    return Path(os.environ.get(CACHE_VARIABLE, Path.home() / ".cache" / "hf_condense"))


@dataclass
class RunContext:
    """A run's accelerator and data (train and test already mapped into the model input space), its model, its
    augmentation and its cache folder."""

    accelerator: Accelerator
    data: RealData
    preprocessor: Preprocessor
    model: ModelConfig
    preprocess: PreprocessConfig
    augment: str  # the DSA strategy
    cache_dir: Path
    train_x: torch.Tensor = field(repr=False)
    test_x: torch.Tensor = field(repr=False)
    val_x: torch.Tensor | None = field(default=None, repr=False)  # the held-out validation split, if any

    @classmethod
    def build(
        cls,
        accelerator: Accelerator,
        data: RealData,
        model: ModelConfig,
        preprocess: PreprocessConfig,
        augment: str,
        cache_dir: Path | None = None,
        preprocessor: Preprocessor | None = None,
    ) -> RunContext:
        """Fit (or read from the cache) the preprocessing and map both splits through it."""
        cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        pre = preprocessor
        if pre is None:
            key = content_key({"dataset": data.source, "preprocess": preprocess.key(), "format": 1})
            pre = Preprocessor.fit_cached(preprocess, data.train_x, key, cache_dir)
        val_x = pre(data.val_x) if data.val_x is not None else None
        return cls(
            accelerator, data, pre, model, preprocess, augment, cache_dir, pre(data.train_x), pre(data.test_x), val_x
        )

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def train_y(self) -> torch.Tensor:
        return self.data.train_y

    @property
    def test_y(self) -> torch.Tensor:
        return self.data.test_y

    @property
    def num_classes(self) -> int:
        return self.data.num_classes

    @cached_property
    def class_indices(self) -> list[torch.Tensor]:
        return self.data.class_indices()

    @cached_property
    def dsa(self) -> DSA:
        return DSA(self.augment)

    def make_model(self, name: str | None = None) -> nn.Module:
        """A freshly initialised network of the run (or another timm `name`), on the CPU."""
        cfg = self.model if name is None else replace(self.model, name=name, kwargs={})
        return build_model(cfg, self.num_classes, self.data.in_chans, self.data.img_size)

    def data_key(self) -> dict:
        """Everything about the real data and its preprocessing that cached artefacts depend on."""
        return {"dataset": self.data.source, "preprocess": self.preprocess.key(), "shape": list(self.train_x.shape)}

    def progress(self, desc: str, total: int, unit: str = "it", **kw) -> Progress:
        """A phase of the run (start and end lines, a bar with ETA) whose reported values go to the trackers."""
        return Progress(desc, total, unit, log=self.accelerator.log, **kw)

    def print(self, *args) -> None:
        """Print once per run (the main process of all nodes), not once per node."""
        if self.accelerator.is_main_process:
            print(*args, flush=True)

    # Processes: each computes its share of independent work; results and gradients are combined.

    def share(self, units: int) -> range:
        """The units of an iteration's independent work (classes, trajectories) this process computes."""
        acc = self.accelerator
        return range(acc.process_index, units, acc.num_processes)

    def per_process(self, seeds: Sequence[int], fn: Callable[[list[int]], list]) -> list:
        """fn(this process's share of the seeds) -> one result per seed; every process gets all results, in seed
        order."""
        acc = self.accelerator
        with acc.split_between_processes(list(enumerate(seeds))) as mine:
            local = list(zip([i for i, _ in mine], fn([s for _, s in mine]))) if mine else []
        merged = gather_object(local) if acc.num_processes > 1 else local
        return [r for _, r in sorted(merged, key=lambda t: t[0])]

    def held_out(self, validation: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """The examples networks are tested on: the test split, or the held-out validation split."""
        return (self.val_x, self.data.val_y) if validation else (self.test_x, self.test_y)

    @staticmethod
    def stage_data(syn: SynSet, schedule: TrainSchedule) -> StageData:
        """What a network trains on for stage `syn`: its training set, lr, epochs (its own, else the schedule's) and
        the schedule its method declared."""
        return StageData(*syn.training_set(), syn.lr, syn.meta.get("epochs", schedule.epochs), syn.schedule(schedule))

    def protocol_runs(
        self, schedule: TrainSchedule, mode: str, seeds: Sequence[int], model: str | None = None, vectorize=False
    ) -> ProtocolRuns:
        """Fresh networks of the run (or of architecture `model`), one per seed, to train stage by stage under the
        protocol on this device; `vectorize`: trained together when the model allows it. The factory is a closure,
        not the bound method: copying the runs (periodic tests) then shares it instead of deep-copying this context,
        its data included."""
        make = lambda: self.make_model(model)  # noqa: E731
        return ProtocolRuns(make, schedule, self.dsa, mode, seeds, self.device, self.num_classes, vectorize)

    def train_and_test(
        self,
        synsets: Sequence[SynSet],
        schedule: TrainSchedule,
        mode: str,
        seeds: Sequence[int],
        model: str | None = None,
        vectorize: bool = False,
        test_batch_size: int = 1024,
        desc: str | None = None,
        on_validation: bool = False,
    ) -> list[list[float]]:
        """Per seed, the test accuracy after each stage of fresh networks trained on `synsets` under the protocol
        (progressive, union or sequential), split across processes. A stage's own `epochs` (in its metadata) wins
        over the schedule's. With `desc`, a phase with a bar over the networks' epochs, logged under that name.
        `on_validation`: tested on the held-out validation split instead of the test split."""
        test_x, test_y = self.held_out(on_validation)
        data = [self.stage_data(s, schedule) for s in synsets]

        def mine(my_seeds: list[int]) -> list[list[float]]:
            epochs = len(my_seeds) * sum(d.epochs for d in data)
            detail = f"{len(seeds)} network(s) x {len(data)} stage(s), {epochs} network-epoch(s), {mode}"
            with self.progress(desc or "", epochs, "epoch", detail=detail, quiet=desc is None) as bar:
                return evaluate_runs(
                    data,
                    self.protocol_runs(schedule, mode, my_seeds, model, vectorize),
                    test_x,
                    test_y,
                    test_batch_size=test_batch_size,
                    on_epoch=bar.update,
                )

        return self.per_process(list(seeds), mine)
