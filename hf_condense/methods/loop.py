"""The shared method loop: `DistillLoop`, the one outer loop of every method that optimises images.

A method builds its learnable state and hands the loop its hooks:

- **init images**: `Workspace.build` (methods/workspace.py) gives the stage's initial images (random or herding-
  selected real images of the task's pool, or noise) beside the earlier stages the student trains on;
- **one step**: `step(it) -> loss`, one forward and backward pass whose gradients land in the learnable tensors;
- **checkpoint state**: `state` (named tensors) and `optimizers`, saved every `checkpoint_every` iterations with the
  generator and restored on resume (`StateFile`);
- **reduce across processes**: a step that computes only its process's share of the work (`ctx.share`) calls
  `reduce_shared` (or `backward_shared`) before returning, so that every process takes the same update;
- **project** (optional): `project()`, run (without grad) after each update to put the state back in its domain
  (RaT-BPTT's soft labels clamped at 0);
- **check** (optional): `check() -> reason | None`, a divergence test after each update, besides non-finite losses
  and gradients, which the loop always catches;
- **skip_above** (optional): a loss above it leaves the iteration without an update (no optimiser steps: DATM's
  threshold); the stage log counts them;
- **snapshot** (optional): `snapshot() -> SynSet`, the stage as it stands, for the periodic tests of `task.probe`;
  with `probe.select == "validation"` they run on the held-out validation split, and after the last iteration the
  state is set back to the best one (`selection` says which, for the stage log).

The loop owns everything else: the progress bar, tracker logging, checkpoints, restoring the last good state and
raising `DivergenceError`, and the periodic tests. Interrupted (Ctrl-C, SIGTERM), it saves a checkpoint at the
iteration it reached (rewinding a half-done iteration to its start), so a resumed stage loses no finished iteration
and still equals an uninterrupted one bit for bit.
"""

from __future__ import annotations

import copy
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from ..core.io import save_safetensors
from ..core.progress import Progress
from ..models.runs import protocol_seeds
from .base import DivergenceError, StageTask, SynSet
from .context import RunContext

PROBE_SALT = 2  # the periodic tests' evaluation seeds (see models.runs.protocol_seeds)


class StateFile:
    """A resumable in-stage checkpoint: named tensors, optimiser momentum, the generator state and the iteration.

    `identity` (a JSON-able dict) must match on restore; a stale or unreadable file is ignored with a warning.
    """

    def __init__(self, folder: Path | None, name: str, identity: dict, writable: bool = True):
        self.path = Path(folder) / f"{name}.safetensors" if folder is not None else None
        self.identity = json.dumps(identity, sort_keys=True, default=str)
        self.writable = writable

    @staticmethod
    def _buffers(optimizers: dict[str, torch.optim.Optimizer]):
        for name, o in optimizers.items():
            for gi, group in enumerate(o.param_groups):
                for pi, p in enumerate(group["params"]):
                    yield f"opt.{name}.{gi}.{pi}", o, p

    def save(
        self,
        tensors: dict[str, torch.Tensor],
        optimizers: dict[str, torch.optim.Optimizer],
        g: torch.Generator,
        iteration: int,
    ) -> Path | None:
        if self.path is None or not self.writable:
            return self.path
        data = {f"t.{k}": v.detach() for k, v in tensors.items()}
        for key, o, p in self._buffers(optimizers):
            for name, value in o.state.get(p, {}).items():  # momentum buffers, Adam moments and step
                if torch.is_tensor(value):
                    data[f"{key}.{name}"] = value
        data["rng"] = g.get_state()
        save_safetensors(data, self.path, metadata={"identity": self.identity, "iteration": str(iteration)})
        return self.path

    def restore(
        self, tensors: dict[str, torch.Tensor], optimizers: dict[str, torch.optim.Optimizer], g: torch.Generator
    ) -> int:
        """Load the checkpoint into the given tensors/optimisers/generator; returns the iteration to resume at."""
        if self.path is None or not self.path.is_file():
            return 0
        from safetensors import safe_open

        try:
            with safe_open(str(self.path), "pt") as f:
                meta = f.metadata() or {}
                data = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:
            logging.getLogger("hf_condense").warning(f"checkpoint {self.path} is unreadable ({e}); starting over")
            return 0
        if meta.get("identity") != self.identity:
            logging.getLogger("hf_condense").warning(f"checkpoint {self.path} belongs to other settings; ignored")
            return 0
        with torch.no_grad():
            for k, v in tensors.items():
                v.copy_(data[f"t.{k}"])
        for key, o, p in self._buffers(optimizers):
            for name in [k[len(key) + 1 :] for k in data if k.startswith(f"{key}.")]:
                value = data[f"{key}.{name}"]
                o.state[p][name] = value if name == "step" else value.to(p.device)
        g.set_state(data["rng"])
        return int(meta["iteration"])


@dataclass
class Mark:
    """Where a loop stood before an iteration: its state, optimiser states, generator state and best iterate, to
    rewind to when the iteration fails (divergence) or is interrupted."""

    state: dict[str, torch.Tensor]
    optimizers: dict[str, dict]
    rng: torch.Tensor
    best: dict[str, torch.Tensor]

    @classmethod
    def take(cls, loop: DistillLoop) -> Mark:
        return cls(
            {k: v.detach().clone() for k, v in loop.state.items()},
            {k: copy.deepcopy(o.state_dict()) for k, o in loop.optimizers.items()},
            loop.generator.get_state(),
            loop.best,  # never changed in place, only replaced
        )

    def rewind(self, loop: DistillLoop) -> None:
        with torch.no_grad():
            for k, v in loop.state.items():
                v.copy_(self.state[k])
        for k, o in loop.optimizers.items():
            o.load_state_dict(self.optimizers[k])
        loop.generator.set_state(self.rng)
        loop.best = self.best


@dataclass
class DistillLoop:
    """`iterations` times: `step(it)` (forward + backward, returning the loss), then the optimisers (see the module
    docstring for the hooks). Resumes from the stage's last checkpoint. A non-finite loss or gradient, or a
    `check()` that returns a reason after the update, rewinds the iteration, saves the state, and raises
    DivergenceError whose message ends with `hint`; an interrupt (KeyboardInterrupt, SIGTERM's `Terminated`) rewinds
    a half-done iteration, saves and re-raises."""

    ctx: RunContext
    task: StageTask
    name: str
    iterations: int
    checkpoint_every: int
    state: dict[str, torch.Tensor]
    optimizers: dict[str, torch.optim.Optimizer]
    generator: torch.Generator
    identity: dict = field(default_factory=dict)
    project: Callable[[], None] | None = None
    check: Callable[[], str | None] | None = None
    postfix: Callable[[], dict] | None = None
    snapshot: Callable[[], SynSet] | None = None
    hint: str = "lower the learning rates"
    skip_above: float | None = None  # an iteration whose loss exceeds it updates nothing (DATM's threshold)

    def run(self, step: Callable[[int], float]) -> list[float]:
        ctx, task, g = self.ctx, self.task, self.generator
        probe = task.probe
        self.selecting = probe.select == "validation" and self.snapshot is not None and probe.every > 0
        self.best: dict[str, torch.Tensor] = {}
        self.probe_start: dict = {}  # the periodic tests' networks after the earlier stages (periodic_test)
        self.skipped = 0  # iterations of this sitting that skip_above left without an update
        if self.selecting:  # the best iterate so far, checkpointed with the rest
            self.best = {f"best.{k}": v.detach().clone() for k, v in self.state.items()}
            self.best["best_meta"] = torch.tensor([-1.0, -1.0], dtype=torch.float64)  # validation accuracy, iteration
        identity = {"stage": task.stage, **self.identity, **({"select": "validation"} if self.selecting else {})}
        file = StateFile(task.checkpoint_dir, self.name, identity, ctx.accelerator.is_main_process)
        first = file.restore(self.saved, self.optimizers, g)
        learnable = [t for t in self.state.values() if t.requires_grad]
        losses = self._iterate(step, file, first, learnable)
        self.selection = self._keep_best()
        return losses

    def log(self, losses: list[float], **extra) -> dict:
        """The stage log of this loop: `loss_log` of its losses and `extra`, which iterate it kept, and how many
        iterations the threshold skipped."""
        skipped = {"skipped_updates": self.skipped} if self.skip_above is not None else {}
        return {**loss_log(losses, **extra), **self.selection, **skipped}

    @property
    def saved(self) -> dict[str, torch.Tensor]:
        """What a checkpoint holds: the state, and the best iterate when selecting."""
        return {**self.state, **self.best}

    def _keep_best(self) -> dict:
        """Selecting on validation: put the best iterate back into the state; what was kept, for the stage log."""
        if not self.selecting or float(self.best["best_meta"][1]) < 0:
            return {}
        with torch.no_grad():
            for k, v in self.state.items():
                v.copy_(self.best[f"best.{k}"])
        acc, it = self.best["best_meta"].tolist()
        self.ctx.print(f"stage {self.task.stage}: kept iteration {int(it)} (validation accuracy {100 * acc:.2f}%)")
        return {"select": "validation", "selected_iteration": int(it), "validation_accuracy": acc}

    def _iterate(self, step, file: StateFile, first: int, learnable: list[torch.Tensor]) -> list[float]:
        losses: list[float] = []
        # (iterations the state holds, the mark to rewind to while one is half done): one assignment, so that an
        # interrupt between two bytecodes never sees the two disagree
        position: tuple[int, Mark | None] = (first, None)
        saved = first
        desc = f"stage {self.task.stage} {self.name}"
        detail = f"{self.iterations} iteration(s)" + (f", resumed at {first}" if first else "")
        try:
            with Progress(desc, self.iterations, initial=first, detail=detail) as bar:
                for it in range(first, self.iterations):
                    position = (it, Mark.take(self))
                    loss, extra = self._one(step, it, position[1], file, learnable)
                    losses.append(loss)
                    position = (it + 1, None)
                    bar.update(1, loss=loss, **extra)
                    if (it + 1) % self.checkpoint_every == 0 and it + 1 < self.iterations:
                        file.save(self.saved, self.optimizers, self.generator, it + 1)
                        saved = it + 1
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: keep every finished iteration
            done, mark = position
            if mark is not None:
                mark.rewind(self)
            where = file.save(self.saved, self.optimizers, self.generator, done) if done > saved else file.path
            if where is not None and done > first:
                self.ctx.print(f"{desc}: stopped at iteration {done} of {self.iterations}, kept in {where}")
            raise
        return losses

    def _one(self, step, it: int, mark: Mark, file: StateFile, learnable: list[torch.Tensor]) -> tuple[float, dict]:
        """Iteration `it`: the step, the update, its checks, logging and periodic test; its loss and postfix."""
        ctx, task = self.ctx, self.task
        for o in self.optimizers.values():
            o.zero_grad(set_to_none=True)
        loss = step(it)
        finite = math.isfinite(loss) and all(t.grad is None or bool(torch.isfinite(t.grad).all()) for t in learnable)
        reason = None if finite else f"non-finite loss or gradient (loss {loss})"
        skip = reason is None and self.skip_above is not None and loss > self.skip_above
        self.skipped += skip
        if reason is None and not skip:
            for o in self.optimizers.values():
                o.step()
            if self.project is not None:
                with torch.no_grad():
                    self.project()
            reason = self.check() if self.check is not None else None
        if reason:
            mark.rewind(self)
            where = file.save(self.saved, self.optimizers, self.generator, it)
            raise DivergenceError(
                f"stage {task.stage}: {self.name} diverged at iteration {it} ({reason}); the last good state is "
                f"in {where}; {self.hint}"
            )
        extra = self.postfix() if self.postfix else {}
        ctx.accelerator.log({f"stage_{task.stage}/{k}": v for k, v in {"loss": loss, **extra}.items()}, step=it)
        every, last = task.probe.every, it + 1 == self.iterations
        if self.snapshot is not None and every and ((it + 1) % every == 0 or (self.selecting and last)):
            acc = periodic_test(ctx, task, self.snapshot(), self.probe_start)
            on = "validation" if self.selecting else "test"
            ctx.accelerator.log({f"stage_{task.stage}/{on}_accuracy": acc}, step=it)
            ctx.print(f"stage {task.stage} iteration {it + 1}: {on} accuracy {100 * acc:.2f}% (periodic test)")
            if self.selecting and acc > float(self.best["best_meta"][0]):
                self.best = {  # replaced whole (a Mark keeps the previous one)
                    **{f"best.{k}": v.detach().clone() for k, v in self.state.items()},
                    "best_meta": torch.tensor([acc, it + 1], dtype=torch.float64),
                }
        return loss, extra


def periodic_test(ctx: RunContext, task: StageTask, current: SynSet, cache: dict) -> float:
    """Test (or, selecting on validation, validation) accuracy of one network trained as the evaluation will train
    this stage: from where the evaluation's mode leaves it after the earlier stages (trained once per stage, kept in
    `cache`), then `task.probe.epochs` epochs with the stage's current images. A cheap progress signal during long
    stages, and the score a validation selection keeps the best iterate by."""
    probe = task.probe
    seeds = protocol_seeds(task.run_seed, PROBE_SALT, 1)

    def mine(my_seeds: list[int]) -> list[float]:
        if "earlier" not in cache:
            earlier = ctx.protocol_runs(task.train, probe.mode, my_seeds)
            earlier.prepare([ctx.stage_data(s, task.train) for s in task.previous])
            cache["earlier"] = earlier
        runs = copy.deepcopy(cache["earlier"])
        runs.add(ctx.stage_data(replace(current, meta={**current.meta, "epochs": probe.epochs}), task.train))
        return runs.accuracy(*ctx.held_out(probe.select == "validation"), probe.test_batch_size)

    return ctx.per_process(seeds, mine)[0]


def loss_log(losses: list[float], **extra) -> dict:
    """Mean loss over the first and last tenth of the iterations, and extra fields."""
    n = max(1, len(losses) // 10)
    head, tail = losses[:n], losses[-n:]
    return {
        "loss_start": sum(head) / max(len(head), 1),
        "loss_end": sum(tail) / max(len(tail), 1),
        **extra,
    }


def reduce_shared(ctx: RunContext, learnable: list[torch.Tensor], loss: float) -> float:
    """The reduce hook: sum over processes of the gradients each accumulated into `learnable` from its share of the
    work, and of their losses; every process then takes the same step. One process: unchanged."""
    acc = ctx.accelerator
    if acc.num_processes == 1:
        return loss
    grads = [t.grad if t.grad is not None else torch.zeros_like(t) for t in learnable]
    flat = acc.reduce(torch.cat([*(gr.reshape(-1) for gr in grads), grads[0].new_tensor([loss])]), reduction="sum")
    offset = 0
    for t in learnable:
        t.grad = flat[offset : offset + t.numel()].view_as(t).clone()
        offset += t.numel()
    return float(flat[-1])


def backward_shared(ctx: RunContext, loss: torch.Tensor, learnable: list[torch.Tensor]) -> float:
    """Backpropagate this process's share of the loss into `learnable`, then `reduce_shared`."""
    if loss.requires_grad:
        loss.backward(inputs=learnable)
    return reduce_shared(ctx, learnable, float(loss.detach()))
