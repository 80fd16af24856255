"""Training and testing networks: the standard protocol's schedule, one or several networks, over staged sets.

Protocol (DC/DSA/DM/MTT): a fresh network per run (each with its own initialisation), SGD momentum 0.9, weight decay
5e-4, batch 256, lr x 0.1 once at half the epochs, DSA on every batch, test accuracy after the last epoch.
Staged sets are trained progressively (S1, then S1 u S2, ... carrying weights and optimiser state), as unions
(a fresh network per cumulative union) or sequentially (S1, then S2 alone, ...).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..data.augment import DSA, cutmix
from .chunking import micro_batch as chunk_size
from .compiling import compile_failed, compiled, should_compile
from .functional import FlatParams
from .pooling import as_convolution
from .sam import GSAM


@dataclass(frozen=True)
class TrainSchedule:
    """How a network trains on a (synthetic) set: optimiser, batch, epochs, lr (and its decay) and augmentation.

    The protocol's SGD is resolved from the recipe's `evaluation` section; a method whose images are meant for
    another schedule (RaT-BPTT: Adam, no decay) stores its changes in the stage (`SynSet.schedule`). Distillation
    trains networks with it too (PDD transitions, experts' pre-training on earlier stages), so it shapes a stage.
    """

    epochs: int = 1000
    batch_size: int = 256
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    augment: bool = True
    optimizer: Literal["sgd", "adam", "gsam"] = "sgd"  # gsam: SGD driven by GSAM (models/sam.py; experts)
    lr_decay: bool = True  # lr x decay_factor at each of decay_at (fractions of the epochs): x 0.1 at half
    decay_at: tuple[float, ...] = (0.5,)
    decay_factor: float = 0.1
    cutmix: float = 0.0  # probability of CutMix on each batch (IDC's training; `augment.cutmix`)
    micro_batch: int | None = None  # examples per forward/backward chunk (None: chunking.micro_batch's rule)
    compile: bool | None = None  # torch.compile the training steps (None: compiling.should_compile's rule)
    sam_rho: float = 0.01  # gsam: the climb's radius (rho)
    sam_alpha: float = 0.4  # gsam: how much of the gradient's part orthogonal to the climbed one is removed

    def key(self) -> dict:
        """What identifies the schedule in stage hashes and cache keys; settings added later are left out at their
        defaults, so that folders and caches made before them keep their keys, and micro_batch and compile, which
        change results only by float round-off, always."""
        d = asdict(self)
        d.pop("micro_batch")
        d.pop("compile")
        for name in ("optimizer", "lr_decay", "decay_at", "decay_factor", "cutmix", "sam_rho", "sam_alpha"):
            if d[name] == getattr(TrainSchedule, name):
                d.pop(name)
        return d


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against class ids or against soft label distributions."""
    if target.dtype == torch.long:
        return F.cross_entropy(logits, target)
    return -(target * F.log_softmax(logits, dim=1)).sum(1).mean()


EpochHook = Callable[..., None]  # on_epoch(networks, loss=mean train loss, accuracy=train accuracy)


def batch_stats(logits: torch.Tensor, target: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
    """(summed loss, correct predictions, examples) of one batch, kept on the device until the epoch ends."""
    hard = target if target.dtype == torch.long else target.argmax(-1)
    n = hard.numel()
    return torch.stack(
        [loss.detach() * n, (logits.detach().argmax(-1) == hard).sum().to(loss.dtype), loss.new_tensor(n)]
    )


def epoch_values(total: torch.Tensor) -> dict[str, float]:
    loss, correct, n = total.tolist()
    return {"loss": loss / max(n, 1), "accuracy": correct / max(n, 1)}


def batch_gradient(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, size: int, mixed: tuple[torch.Tensor, float] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Accumulate the gradient of the batch-mean loss into .grad, in chunks of `size` examples; (logits, loss).
    `mixed` (CutMix's other labels and the unmixed share): the two losses weighted by area. First order only, so
    pooling runs in its faster CPU form (`pooling.as_convolution`)."""
    parts, loss = [], 0.0
    with as_convolution():
        for j in range(0, len(x), size):
            logits = model(x[j : j + size])
            part = soft_cross_entropy(logits, y[j : j + size])
            if mixed is not None:
                other, kept = mixed
                part = kept * part + (1 - kept) * soft_cross_entropy(logits, other[j : j + size])
            part = part * (len(logits) / len(x))
            part.backward()
            parts.append(logits.detach())
            loss = loss + part.detach()
    return (parts[0] if len(parts) == 1 else torch.cat(parts)), loss


def train_epoch(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    dsa: DSA | None,
    generator: torch.Generator,
    device: torch.device,
    on_batch: Callable[[torch.Tensor, torch.Tensor], None] | None = None,
    micro_batch: int | None = None,
    compile: bool = False,
    cutmix_p: float = 0.0,
) -> dict[str, float]:
    """One shuffled pass over (x, y); `on_batch(indices, logits)` sees every batch (e.g. forgetting counters).
    Each batch's forward/backward runs in chunks of `micro_batch` examples (None: `chunking.micro_batch`'s rule),
    gradients summed; with `compile`, through torch.compile (eagerly if that fails). With probability `cutmix_p` a
    batch is CutMixed after its augmentation. Returns the epoch's mean train loss and train accuracy."""
    model.train()
    run = compiled(model) if compile else model
    perm = torch.randperm(len(x), generator=generator)
    total = torch.zeros(3, device=device)
    size = None  # examples per chunk: chosen from the first batch (the others are as large or smaller)
    for i in range(0, len(x), batch_size):
        idx = perm[i : i + batch_size]
        xb, yb = x[idx].to(device, non_blocking=True), y[idx].to(device, non_blocking=True)
        if dsa is not None and dsa.enabled:
            xb = dsa(xb, generator)
        mixed = None
        if cutmix_p and float(torch.rand(1, generator=generator)) < cutmix_p:
            xb, perm_b, kept = cutmix(xb, generator)
            mixed = (yb[perm_b], kept)
        if size is None:
            size = chunk_size(micro_batch, model, xb, "compiled" if run is not model else "train") or len(xb)
        opt.zero_grad(set_to_none=True)
        try:
            logits, loss = batch_gradient(run, xb, yb, size, mixed)
        except torch._dynamo.exc.TorchDynamoException as e:  # compiling failed: this batch and the rest eagerly
            if run is model:
                raise
            compile_failed(e)
            run = model
            opt.zero_grad(set_to_none=True)
            logits, loss = batch_gradient(run, xb, yb, size, mixed)
        if getattr(opt, "needs_closure", False):  # sharpness-aware: the same batch's gradient at climbed weights
            opt.step(functools.partial(batch_gradient, run, xb, yb, size, mixed))
        else:
            opt.step()
        total += batch_stats(logits, yb, loss)
        if on_batch is not None:
            on_batch(idx, logits)
    return epoch_values(total)


@torch.no_grad()
def test_logits(model: nn.Module, x: torch.Tensor, device: torch.device, batch_size: int = 1024) -> torch.Tensor:
    """The model's logits on x in eval mode (on the CPU), batch by batch."""
    model.eval()
    with as_convolution():
        return torch.cat([model(x[i : i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)])


def test_accuracy(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device, batch_size: int = 1024
) -> float:
    if not len(x):
        return 0.0
    return int((test_logits(model, x, device, batch_size).argmax(1) == y).sum()) / len(x)


def scheduled_epochs(
    opt: torch.optim.Optimizer,
    lr: float,
    epochs: int,
    decay: bool = True,
    at: Sequence[float] = (0.5,),
    factor: float = 0.1,
) -> Iterator[int]:
    """Yield the epochs at `lr`, multiplied by `factor` from each milestone int(epochs x a) on (a in `at`, from the
    first epoch after the start) when `decay`: x 0.1 once at half (the standard protocol), or IDC's x 0.2 at 2/3 and
    5/6 (a MultiStepLR)."""
    milestones = [m for m in (int(epochs * a + 1e-9) for a in at) if m > 0] if decay else []
    for epoch in range(epochs):
        scale = factor ** sum(epoch >= m for m in milestones)
        for group in opt.param_groups:
            group["lr"] = lr * scale
        yield epoch


def fit(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    epochs: int,
    lr: float,
    cfg: TrainSchedule,
    dsa: DSA | None,
    generator: torch.Generator,
    device: torch.device,
    on_epoch: EpochHook | None = None,
) -> None:
    """Train for `epochs` on the standard schedule; `on_epoch(1, loss=..., accuracy=...)` after each. Compiled
    when `cfg.compile` says so or, unset, when the rule finds the job large enough (`compiling.should_compile`)."""
    compile = should_compile(cfg.compile, device, epochs * len(x), model, x[:1])
    for _ in scheduled_epochs(opt, lr, epochs, cfg.lr_decay, cfg.decay_at, cfg.decay_factor):
        values = train_epoch(
            model,
            opt,
            x,
            y,
            cfg.batch_size,
            dsa,
            generator,
            device,
            micro_batch=cfg.micro_batch,
            compile=compile,
            cutmix_p=cfg.cutmix,
        )
        if on_epoch is not None:
            on_epoch(1, **values)


def optimizer_for(params, cfg: TrainSchedule, lr: float) -> torch.optim.Optimizer:
    """The schedule's optimiser over `params` (element-wise, so it also serves stacked networks)."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "gsam":
        return GSAM(params, lr, cfg.sam_rho, cfg.sam_alpha, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def make_optimizer(model: nn.Module, cfg: TrainSchedule, lr: float) -> torch.optim.Optimizer:
    return optimizer_for(model.parameters(), cfg, lr)


class NetGroup:
    """Networks trained side by side (evaluation runs, experts), each with its own optimiser state (one at a time);
    the sequential counterpart of stacked.StackedNets, with the same methods."""

    def __init__(self, models: Sequence[nn.Module], cfg: TrainSchedule, lr: float):
        self.models = list(models)
        self.set_optimizer(cfg, lr)

    def set_optimizer(self, cfg: TrainSchedule, lr: float) -> None:
        self.opts = [make_optimizer(m, cfg, lr) for m in self.models]

    def fit(self, x, y, epochs: int, lr: float, cfg: TrainSchedule, dsa, generators, device, on_epoch=None) -> None:
        for model, opt, g in zip(self.models, self.opts, generators):
            fit(model, opt, x, y, epochs, lr, cfg, dsa, g, device, on_epoch)

    def train_epoch(
        self, x, y, batch_size: int, dsa, generators, device, micro_batch=None, compile: bool = False
    ) -> dict[str, float]:
        """One epoch of every network; their mean train loss and accuracy."""
        values = [
            train_epoch(m, o, x, y, batch_size, dsa, g, device, micro_batch=micro_batch, compile=compile)
            for m, o, g in zip(self.models, self.opts, generators)
        ]
        return {k: sum(v[k] for v in values) / len(values) for k in values[0]}

    def flat_params(self) -> torch.Tensor:
        """(networks, parameters): every network's parameters, flattened in module order, detached."""
        return torch.stack([FlatParams(m).flatten() for m in self.models])

    def accuracy(self, x, y, device, batch_size: int) -> list[float]:
        return [test_accuracy(m, x, y, device, batch_size) for m in self.models]
