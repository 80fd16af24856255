"""What every method that optimises synthetic images shares: the initial images, the earlier stages as fixed (or,
when boosting, slowly trained) inputs, and the outer loop with progress, resumable checkpoints and divergence
detection. A method supplies only its objective (`step`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

import torch
from accelerate.utils import tqdm

from ..config import MethodConfig, opt
from ..formation import decode, encode
from ..training import fit, make_optimizer
from .base import DivergenceError, StageOutput, StageTask, StateFile, SynSet, training_union
from .coreset import embedding_features, herding

InitMode = Literal["real", "herding", "noise"]
INIT_HELP = "Initial images: random real images, herding-selected real images, or Gaussian noise."


@dataclass
class SampledNetworkConfig(MethodConfig):
    """Settings shared by the methods that match under sampled networks (DC, DSA, DM)."""

    batch_real: int = opt(256, min=1, help="Real images per class per match.")
    init: InitMode = opt("real", help=INIT_HELP)
    transition_nets: int = opt(8, min=1, help="PDD transition: networks pre-trained on the earlier stages.")
    transition_epochs: int | None = opt(None, min=1, help="Their epochs (default: evaluation.epochs).")


def init_images(
    ctx, task: StageTask, mode: str, g: torch.Generator, factor: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """ipc images per class: random or herding-selected real images from the stage's pool (with a multi-formation
    factor, each made of factor^2 downsampled real images), Gaussian noise, or unit-norm noise."""
    labels = torch.arange(ctx.num_classes).repeat_interleave(task.ipc)
    shape = (len(labels), *ctx.train_x.shape[1:])
    if mode == "noise":
        return torch.randn(shape, generator=g), labels
    if mode == "unit_noise":  # RaT-BPTT: Gaussian noise scaled to unit norm per image
        x = torch.randn(shape, generator=g)
        return x / x.flatten(1).norm(dim=1).view(-1, *[1] * (x.ndim - 1)), labels
    n = task.ipc * factor**2
    if mode == "herding":  # greedy mean matching in the features of a network trained one epoch on real data
        feats, none = embedding_features(ctx, 1), torch.empty(0, dtype=torch.long)
        picks = [pool[herding(feats[pool], n, none)] for pool in task.pool]
    else:
        picks = [pool[torch.randperm(len(pool), generator=g)[:n]] for pool in task.pool]
    return torch.cat([encode(ctx.train_x[p], factor) for p in picks]), labels


@dataclass
class Workspace:
    """The stage's learnable images (and labels), beside the earlier stages the student also trains on."""

    images: torch.Tensor  # requires grad
    labels: torch.Tensor
    ctx_x: torch.Tensor  # earlier stages (requires grad only when boosting)
    ctx_y: torch.Tensor
    boosting: bool
    factor: int = 1  # multi-formation: each stored image trains as factor^2 decoded images

    @classmethod
    def build(cls, ctx, task: StageTask, init: str, g: torch.Generator, factor: int = 1) -> Workspace:
        dev = ctx.device
        images, labels = init_images(ctx, task, init, g, factor)
        context = task.context_set
        boosting = task.boost_beta > 0 and bool(context)  # idc.check refuses boosting multi-formation stages
        pairs = [(s.images, s.labels) if boosting else decode(s.images, s.labels, s.formation_factor) for s in context]
        ctx_x = torch.cat([x for x, _ in pairs]) if pairs else images.new_zeros((0, *images.shape[1:]))
        ctx_y = torch.cat([y for _, y in pairs]) if pairs else labels.new_zeros(0)
        ctx_x = ctx_x.to(dev).requires_grad_(boosting)
        return cls(images.to(dev).requires_grad_(True), labels.to(dev), ctx_x, ctx_y.to(dev), boosting, factor)

    def decoded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This stage's images and labels as a network trains on them."""
        return decode(self.images, self.labels, self.factor)

    @property
    def all_x(self) -> torch.Tensor:
        return torch.cat([self.ctx_x, self.decoded()[0]])

    @property
    def all_y(self) -> torch.Tensor:
        return torch.cat([self.ctx_y, self.decoded()[1]])

    def class_x(self, c: int) -> torch.Tensor:
        """Class c's training images: earlier stages' then this stage's."""
        mine = self.labels == c
        return torch.cat([self.ctx_x[self.ctx_y == c], decode(self.images[mine], self.labels[mine], self.factor)[0]])

    def param_groups(self, lr: float, beta: float) -> list[dict]:
        """Optimiser groups: the stage's images at lr, earlier blocks at lr x beta when boosting."""
        groups = [{"params": [self.images], "lr": lr}]
        if self.boosting:
            groups.append({"params": [self.ctx_x], "lr": lr * beta})
        return groups

    def learnable(self) -> list[torch.Tensor]:
        return [self.images, self.ctx_x] if self.boosting else [self.images]

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"images": self.images, "ctx_x": self.ctx_x}

    def output(self, task: StageTask, lr: float, log: dict, soft_labels: torch.Tensor | None = None) -> StageOutput:
        """The stage's images as a SynSet, with the earlier stages when boosting moved them."""
        meta = {"formation_factor": self.factor} if self.factor > 1 else {}
        stage = SynSet(self.images.detach().cpu(), self.labels.cpu(), lr=lr, soft_labels=soft_labels, meta=meta)
        return StageOutput(stage, previous=self.previous(task), log=log)

    def previous(self, task: StageTask) -> list[SynSet] | None:
        """The earlier stages as boosting left them (None when they did not move)."""
        if not self.boosting:
            return None
        out, offset = [], 0
        for s in task.previous:
            n = len(s.images)
            out.append(SynSet(self.ctx_x[offset : offset + n].detach().cpu(), s.labels, s.lr, meta=s.meta))
            offset += n
        return out


def run_loop(
    ctx,
    task: StageTask,
    name: str,
    iterations: int,
    checkpoint_every: int,
    tensors: dict[str, torch.Tensor],
    optimizers: dict[str, torch.optim.Optimizer],
    g: torch.Generator,
    step: Callable[[int], float],
    identity: dict | None = None,
    check: Callable[[], str | None] | None = None,
    postfix: Callable[[], dict] | None = None,
    hint: str = "lower the learning rates",
    snapshot: Callable[[], SynSet] | None = None,
) -> list[float]:
    """Run `step(it)` (forward + backward, returning the loss) then the optimisers, `iterations` times.

    Each loss goes to the run's Accelerate trackers; every `evaluation.every` iterations, `snapshot()` (the stage's
    current images) is tested with `periodic_test`.

    Resumes from the stage's last checkpoint. A non-finite loss or gradient, or a `check()` that returns a reason
    after the update, restores the tensors as they were before it, saves them, and raises DivergenceError.
    """
    state = StateFile(
        task.checkpoint_dir, name, {"stage": task.stage, **(identity or {})}, ctx.accelerator.is_main_process
    )
    first = state.restore(tensors, optimizers, g)
    learnable = [t for t in tensors.values() if t.requires_grad]
    losses: list[float] = []
    bar = tqdm(
        range(first, iterations),
        desc=f"stage {task.stage} {name}",
        mininterval=5,
        main_process_only=True,
        initial=first,
        total=iterations,
    )
    for it in bar:
        good = {k: v.detach().clone() for k, v in tensors.items()}
        for o in optimizers.values():
            o.zero_grad(set_to_none=True)
        loss = step(it)
        finite = math.isfinite(loss) and all(t.grad is None or bool(torch.isfinite(t.grad).all()) for t in learnable)
        reason = None if finite else f"non-finite loss or gradient (loss {loss})"
        if reason is None:
            for o in optimizers.values():
                o.step()
            reason = check() if check is not None else None
        if reason:
            with torch.no_grad():
                for k, v in tensors.items():
                    v.copy_(good[k])
            where = state.save(tensors, optimizers, g, it)
            raise DivergenceError(
                f"stage {task.stage}: {name} diverged at iteration {it} ({reason}); the last good state is in "
                f"{where}; {hint}"
            )
        losses.append(loss)
        extra = postfix() if postfix else {}
        ctx.accelerator.log({f"stage_{task.stage}/{k}": v for k, v in {"loss": loss, **extra}.items()}, step=it)
        every = ctx.recipe.evaluation.every
        if snapshot is not None and every and (it + 1) % every == 0:
            acc = periodic_test(ctx, task, snapshot())
            ctx.accelerator.log({f"stage_{task.stage}/test_accuracy": acc}, step=it)
            ctx.print(f"stage {task.stage} iteration {it + 1}: test accuracy {100 * acc:.2f}% (periodic test)")
        if it % 10 == 0:
            bar.set_postfix(loss=f"{loss:.4f}", **{k: f"{v:.4g}" for k, v in extra.items()})
        if (it + 1) % checkpoint_every == 0 and it + 1 < iterations:
            state.save(tensors, optimizers, g, it + 1)
    return losses


def periodic_test(ctx, task: StageTask, current: SynSet) -> float:
    """Test accuracy of one network trained `evaluation.every_epochs` epochs on the earlier stages plus the stage's
    current images (their union): a cheap progress signal during long stages, not the final protocol."""
    from ..evaluation import evaluate_synsets

    epochs = ctx.recipe.evaluation.every_epochs
    sets = [replace(s, meta={**s.meta, "epochs": epochs}) for s in [*task.previous, current]]
    return evaluate_synsets(ctx, sets, mode="union", salt=2, runs=1)[-1][0]


def loss_log(losses: list[float], **extra) -> dict:
    """Mean loss over the first and last tenth of the iterations, and extra fields."""
    n = max(1, len(losses) // 10)
    head, tail = losses[:n], losses[-n:]
    return {
        "loss_start": sum(head) / max(len(head), 1),
        "loss_end": sum(tail) / max(len(tail), 1),
        **extra,
    }


def transition_starts(ctx, task: StageTask, count: int, epochs: int) -> list[dict] | None:
    """PDD transition for bases that sample networks: `count` networks trained on the earlier stages (the protocol's
    optimiser, `epochs` epochs, each stage's lr), whose weights replace fresh initialisations; None for stage 1."""
    if not (task.transition and task.previous):
        return None
    ev = ctx.recipe.evaluation
    x, y = training_union(task.previous)
    lr = task.previous[-1].lr
    starts = []
    for i in range(count):
        torch.manual_seed(task.seed + 7 * i)
        model = ctx.make_model().to(ctx.device)
        g = torch.Generator().manual_seed(task.seed + 7 * i)
        fit(model, make_optimizer(model, ev, lr), x, y, epochs, lr, ev, ctx.dsa if ev.augment else None, g, ctx.device)
        starts.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    return starts


def sample_network(ctx, starts: list[dict] | None, g: torch.Generator) -> torch.nn.Module:
    """A fresh network, or (PDD transition) a copy of one trained on the earlier stages."""
    torch.manual_seed(int(torch.randint(2**31 - 1, (1,), generator=g)))
    model = ctx.make_model().to(ctx.device)
    if starts:
        model.load_state_dict(starts[int(torch.randint(len(starts), (1,), generator=g))])
    return model


@dataclass
class ClassDraw:
    """The random choices of one class match: real images (indices into the train set), a subset of the class's
    synthetic images (None: all), and one siamese augmentation (None: none)."""

    real: torch.Tensor
    syn: torch.Tensor | None
    aug: object | None

    @classmethod
    def draw(cls, ctx, ws: Workspace, pool: torch.Tensor, c: int, batch_real: int, siamese: bool, g, max_syn=None):
        """Drawn for every class by every process in one order, whichever classes the process computes."""
        real = pool[torch.randperm(len(pool), generator=g)[:batch_real]]
        syn = torch.randperm(len(ws.class_x(c)), generator=g)[:max_syn] if max_syn is not None else None
        aug = ctx.dsa.sample(1, tuple(ws.images.shape[-2:]), g) if siamese and ctx.dsa.enabled else None
        return cls(real, syn, aug)

    def inputs(self, ctx, ws: Workspace, c: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The real and the synthetic batch of class c (differentiable in the synthetic images), augmented alike."""
        xr, xs = ctx.train_x[self.real].to(ctx.device, non_blocking=True), ws.class_x(c)
        if self.syn is not None:
            xs = xs[self.syn.to(xs.device)]
        if self.aug is not None:
            xr, xs = ctx.dsa.apply(xr, self.aug), ctx.dsa.apply(xs, self.aug)
        return xr, xs


def my_class_draws(ctx, ws: Workspace, task: StageTask, batch_real: int, siamese: bool, g) -> list[tuple]:
    """(class, ClassDraw) for this process's share of the classes; every process draws for every class, in class
    order, so that the generators stay in step."""
    draws = [ClassDraw.draw(ctx, ws, task.pool[c], c, batch_real, siamese, g) for c in range(ctx.num_classes)]
    return [(c, draws[c]) for c in my_share(ctx, ctx.num_classes)]


def my_share(ctx, units: int) -> range:
    """The units of an iteration's independent work (classes, trajectories) this process computes: i mod processes."""
    acc = ctx.accelerator
    return range(acc.process_index, units, acc.num_processes)


def reduce_shared(ctx, learnable: list[torch.Tensor], loss: float) -> float:
    """Sum over processes of the gradients each accumulated into `learnable` from its share of the work, and of their
    losses; every process then takes the same step. One process: unchanged."""
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


def backward_shared(ctx, loss: torch.Tensor, learnable: list[torch.Tensor]) -> float:
    """Backpropagate this process's share of the loss into `learnable`, then `reduce_shared`."""
    if loss.requires_grad:
        loss.backward(inputs=learnable)
    return reduce_shared(ctx, learnable, float(loss.detach()))


def network_matching_setup(ctx, task: StageTask, cfg, factor: int = 1):
    """Shared start of the methods that match under sampled networks (DC, DSA, IDC, DM): the generator, the workspace
    (IDC: multi-formation `factor`), SGD (momentum 0.5) on the images, and the PDD transition networks (None for
    stage 1 or without transition)."""
    g = torch.Generator().manual_seed(task.seed)
    ws = Workspace.build(ctx, task, cfg.init, g, factor)
    opt_img = torch.optim.SGD(ws.param_groups(cfg.lr_img, task.boost_beta), lr=cfg.lr_img, momentum=0.5)
    starts = transition_starts(ctx, task, cfg.transition_nets, cfg.transition_epochs or ctx.recipe.evaluation.epochs)
    return g, ws, opt_img, starts


def run_image_loop(ctx, task: StageTask, name: str, cfg, g, ws: Workspace, opt_img, step, **log) -> StageOutput:
    """Shared end of the methods that match under sampled networks (DC, DSA, IDC, DM): `run_loop` over the images'
    optimiser, then the stage at the protocol's lr, with the loss summary and `log` in its metadata."""
    lr = ctx.recipe.evaluation.lr
    losses = run_loop(
        ctx,
        task,
        name,
        cfg.iterations,
        cfg.checkpoint_every,
        ws.tensors(),
        {"img": opt_img},
        g,
        step,
        hint="lower method.lr_img",
        snapshot=lambda: ws.output(task, lr, {}).stage,
    )
    return ws.output(task, lr, loss_log(losses, iterations=cfg.iterations, **log))


def per_stage_errors(recipe, check: Callable[[MethodConfig], list[str]]) -> list[str]:
    """`check` on each stage's method config (its overrides applied), each error tagged with the stage."""
    return [f"{e} (stage {k})" for k in range(1, recipe.stages.count + 1) for e in check(recipe.stage_method(k))]


def functional_norm_errors(recipe, method: str) -> list[str]:
    """Batch norm updates running statistics in place, which a functional unroll cannot carry."""
    if recipe.model.kwargs.get("norm") == "batch":
        return [f"model.kwargs.norm: 'batch' breaks the functional unroll; use 'instance' or 'none' for {method}"]
    return []
