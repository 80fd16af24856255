"""MTT: Dataset Distillation by Matching Training Trajectories (Cazenavette et al., CVPR 2022).

Each iteration picks an expert and a start epoch t < max_start_epoch (as the official code's
`np.random.randint(0, max_start_epoch)`); a student starts at theta*_t and takes syn_steps SGD steps with a learnable
step size alpha on augmented (non-siamese DSA) minibatches of classes x IPC synthetic images (the official default);
the loss is ||theta_N - theta*_{t+M}||^2 / ||theta*_t - theta*_{t+M}||^2 (M = expert_epochs), backpropagated through
the unroll into the images and alpha, each updated by SGD with momentum 0.5. Images start as random real images.
With `trajectories` > 1 an iteration matches several (expert, start) pairs and averages their gradients; under
several processes each computes its share and the gradients are summed across them; `vectorize_trajectories` unrolls
a process's share together under vmap (fewer, larger kernels: faster on GPUs).
In a stage engine run the student also trains on the earlier stages (conditioning: each step's minibatch is drawn
from their union with the stage's images, still classes x the stage's IPC, as PDD's and SeqMatch's code draw it), the
experts start from weights trained on them (transition), and boosting lets earlier blocks move at lr_img x beta.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import torch

from ..core.config import opt
from ..models.chunking import MICRO_BATCH_HELP, describe, micro_batch
from ..models.compiling import COMPILE_HELP, COMPILE_MIN_EXAMPLES
from ..models.functional import FlatParams
from ..models.training import TrainSchedule
from .base import Capabilities, MethodConfig, MethodSpec, StageOutput, StageTask
from .difficulty import Curriculum
from .experts import EXPERT_SGD, ExpertSettings, ExpertStore, real_subset
from .loop import DistillLoop, reduce_shared
from .unroll import CompiledUnroll, batched_unroll_backward, unroll_backward
from .workspace import INIT_HELP, InitMode, Workspace


@dataclass
class MTTConfig(MethodConfig):
    """MTT's settings (defaults: the paper's CIFAR-10 IPC 10 row, see REFERENCE.md)."""

    iterations: int = opt(5000, min=1, help="Distillation iterations per stage.")
    syn_steps: int = opt(20, min=1, help="Student SGD steps per iteration (N).")
    expert_epochs: int = opt(2, min=1, help="Expert epochs the student must match (M).")
    max_start_epoch: int = opt(
        20,
        min=1,
        help="Students start from expert epochs below this one (min_start_epoch <= t < max_start_epoch, as the "
        "official code draws them).",
    )
    min_start_epoch: int = opt(
        0, min=0, help="Earliest expert epoch a student may start from (SeqMatch: the start of a subset's interval)."
    )
    lr_img: float = opt(1000.0, gt=0, help="SGD lr (momentum 0.5) of the images.")
    lr_lr: float = opt(1e-5, min=0, help="SGD lr (momentum 0.5) of the learnable step size alpha.")
    lr_teacher: float = opt(
        0.01,
        gt=0,
        help="Initial value of the learnable step size alpha (distill.py's --lr_teacher); also the experts' lr unless "
        "expert_lr is set.",
    )
    expert_lr: float | None = opt(None, gt=0, help="Experts' SGD lr (buffer.py's --lr_teacher; default: lr_teacher).")
    batch_syn: int | None = opt(
        None,
        min=1,
        help="Synthetic images per student step, drawn from the student's whole set (with conditioning the earlier "
        "stages too). Default: classes x this stage's IPC, the official rule (a single-stage run: every image).",
    )
    trajectories: int = opt(
        1, min=1, help="Expert trajectories matched per iteration, gradients averaged; split across processes."
    )
    vectorize_trajectories: bool | None = opt(
        None,
        help="Unroll a process's trajectories together under vmap (fewer, larger kernels; plain memory only). "
        "Default: on a GPU when an iteration matches several trajectories with plain memory, off on CPUs (slower).",
        compute="vectorize_trajectories",
    )
    num_experts: int = opt(100, min=1, help="Expert trajectories to train and sample from.")
    experts: str | None = opt(
        None,
        affects_result=False,
        help="Shared experts: a Hub model repo (org/name, or org/name@revision) or a local folder made by "
        "`hf-condense experts push`; the run downloads the experts it uses, verifies them, and builds here only what "
        "the repo lacks (docs: share and reuse experts).",
    )
    expert_batch_size: int = opt(256, min=1, help="Experts' minibatch size.")
    expert_augment: bool = opt(True, help="DSA while training experts.")
    expert_stack: int = opt(
        1,
        min=1,
        help="Experts trained together as one vmapped network (1: one by one; slower on CPU: docs/benchmarks.md).",
        compute="expert_stack",
    )
    expert_extra_epochs: int = opt(0, min=0, help="Train experts this many epochs beyond what matching needs.")
    expert_optimizer: Literal["sgd", "gsam"] = opt(
        "sgd",
        help="The experts' optimiser on real data: sgd (MTT's buffers), or gsam, GSAM over that SGD (the FTD, DATM "
        "and PAD buffers; twice the gradients per step; experts train unstacked).",
        added=True,
    )
    expert_sam_rho: float = opt(
        0.01, gt=0, help="gsam experts: the climb's radius rho (DATM's run_buffer.sh).", added=True
    )
    expert_sam_alpha: float = opt(
        0.4, min=0, help="gsam experts: GSAM's alpha (DATM's buffer_FTD.py default).", added=True
    )
    expert_curriculum: Literal["none", "el2n"] = opt(
        "none",
        help="PAD's data selection: el2n trains the experts easy to hard by EL2N score (computed here: el2n_networks "
        "networks x el2n_epochs epochs), each class from its easiest curriculum_initial fraction up to all of it at "
        "epoch curriculum_add_end, then without its easiest curriculum_remove_fractions from the matching "
        "curriculum_remove_epochs on.",
        added=True,
    )
    curriculum_initial: float = opt(
        0.75, gt=0, max=1, help="el2n: the easiest fraction at epoch 0 (PAD's IR).", added=True
    )
    curriculum_add_end: int = opt(
        20, min=0, help="el2n: the epoch by which the experts see all examples (PAD's AEE).", added=True
    )
    curriculum_remove_epochs: list[int] = opt(
        default_factory=lambda: [40, 60], help="el2n: after these epochs the easiest examples are dropped.", added=True
    )
    curriculum_remove_fractions: list[float] = opt(
        default_factory=lambda: [0.1, 0.2],
        help="el2n: the easiest fraction of each class dropped after each removal epoch (PAD's README run).",
        added=True,
    )
    el2n_networks: int = opt(10, min=1, help="el2n: networks the scores average over (Paul et al.).", added=True)
    el2n_epochs: int = opt(20, min=1, help="el2n: epochs each scoring network trains (Paul et al.).", added=True)
    transition_epochs: int | None = opt(
        None,
        min=1,
        help="PDD transition: epochs on the earlier stages before "
        "the real epochs of a stage's experts (default: evaluation.epochs).",
        later_stages=True,
    )
    transition_experts: int | None = opt(
        None,
        min=1,
        help="PDD transition: experts retrained for each later stage (default: num_experts).",
        later_stages=True,
    )
    memory: Literal["plain", "checkpoint"] = opt(
        "plain",
        help="checkpoint: recompute the unroll in segments (memory of one segment, the same gradients, more time: "
        "benchmarks/results/unroll_memory.md).",
        compute="memory",
    )
    segments: int | None = opt(
        None, min=1, help="Segments of the checkpointed unroll (default sqrt(syn_steps)).", compute="segments"
    )
    micro_batch: int | None = opt(
        None,
        min=0,
        help=f"{MICRO_BATCH_HELP} of each student step (default: chosen from device and shapes, recorded in the "
        "stage; 0: whole batch).",
        compute="micro_batch",
    )
    expert_micro_batch: int | None = opt(
        None,
        min=0,
        affects_result=False,
        help=f"{MICRO_BATCH_HELP} of the experts' steps (default: chosen as for micro_batch; 0: whole).",
        compute="expert_micro_batch",
    )
    expert_compile: bool | None = opt(
        None,
        affects_result=False,
        help=f"{COMPILE_HELP} for the experts' real epochs (default: on a CPU for narrow networks, such as "
        f"ConvNet-D3W32, that train at least {COMPILE_MIN_EXAMPLES:,} examples in all; eager on GPUs).",
        compute="expert_compile",
    )
    compile_unroll: bool = opt(
        False,
        affects_result=False,
        help="Unroll with compiled per-step VJPs (torch.compile; CUDA graphs on GPUs): memory of one step, the same "
        "gradients up to float round-off; for launch-bound GPU unrolls (slower on CPUs: docs/benchmarks.md).",
        compute="compile_unroll",
    )
    init: InitMode = opt("real", help=INIT_HELP)
    max_alpha_factor: float = opt(100.0, gt=1, help="alpha above lr_teacher x this counts as divergence.")
    checkpoint_every: int = opt(100, min=1, help="Iterations between resumable in-stage checkpoints.")


def expert_settings(cfg: MTTConfig, seed: int) -> ExpertSettings:
    """How the experts of a stage with config `cfg` train, in a run of seed `seed`."""
    return ExpertSettings(
        num_experts=cfg.num_experts,
        epochs=expert_epochs_trained(cfg),
        lr=cfg.expert_lr or cfg.lr_teacher,
        batch_size=cfg.expert_batch_size,
        augment=cfg.expert_augment,
        seed=seed,
        stack=cfg.expert_stack,
        micro_batch=cfg.expert_micro_batch,
        compile=cfg.expert_compile,
        schedule=EXPERT_SGD
        if cfg.expert_optimizer == "sgd"
        else replace(EXPERT_SGD, optimizer="gsam", sam_rho=cfg.expert_sam_rho, sam_alpha=cfg.expert_sam_alpha),
        curriculum=curriculum(cfg),
    )


def expert_epochs_trained(cfg: MTTConfig) -> int:
    """How many epochs the experts train: what matching reads, and any extra."""
    return cfg.max_start_epoch + cfg.expert_epochs + cfg.expert_extra_epochs


def curriculum(cfg: MTTConfig) -> Curriculum | None:
    """PAD's easy-to-hard schedule of the experts' real examples, by EL2N scores (None: off)."""
    if cfg.expert_curriculum == "none":
        return None
    removals = tuple(zip(cfg.curriculum_remove_epochs, cfg.curriculum_remove_fractions, strict=False))
    return Curriculum(cfg.curriculum_initial, cfg.curriculum_add_end, removals, cfg.el2n_networks, cfg.el2n_epochs)


def stage_experts(
    store: ExpertStore, cfg: MTTConfig, earlier: list, ev: TrainSchedule, seed: int, pools: list | None = None
) -> tuple[str, list[Path]]:
    """(key, paths) of the experts a stage matches: the base experts, or with `earlier` stages (a PDD transition)
    experts retrained on them first. `pools`: per stage up to this one, its per-class real train indices (a
    curriculum's bands; missing stages: all data), which the matching experts' real epochs use.
    Shared by distillation and by tools that inspect a finished run."""
    levels = (pools or [])[-(len(earlier) + 1) :]
    reals = [None] * (len(earlier) + 1 - len(levels)) + [real_subset(p, len(store.ctx.train_y)) for p in levels]
    epochs = cfg.transition_epochs or ev.epochs
    return store.stage_experts(expert_settings(cfg, seed), earlier, epochs, ev, cfg.transition_experts, reals)


def band_hint(pool: list[torch.Tensor], n: int) -> str:
    """Why a curriculum stage may diverge: experts trained on a narrow band move little, so the normalised matching
    loss (divided by their squared movement) and its gradients blow up."""
    real = real_subset(pool, n)
    if real is None:
        return ""
    return (
        f"; this stage's experts trained on {len(real)} of {n} real examples (its forgetting band), which move them "
        "little and inflate the matching loss: stages.curriculum_scope=init (experts on all data), a wider "
        "stages.forgetting_band or stages.curriculum=forgetting_quantile gives them more"
    )


def start_epoch(cfg: MTTConfig, g: torch.Generator, upper: int | None = None) -> int:
    """A student's start epoch, uniform in [min_start_epoch, upper) (default upper: max_start_epoch): the official
    MTT, PDD, SeqMatch and DATM code draw it with np.random.randint, which excludes the upper bound."""
    return int(torch.randint(cfg.min_start_epoch, upper or cfg.max_start_epoch, (1,), generator=g))


@dataclass
class StudentLabels:
    """What the student trains its images against: `targets()` gives the labels of the whole student set for one
    iteration (hard class ids for MTT; class distributions made from learnable logits for DATM), `state` and
    `optimizers` what the loop must checkpoint and step besides the images, `soft()` the stage's stored soft labels."""

    targets: Callable[[], torch.Tensor]
    state: dict[str, torch.Tensor] = field(default_factory=dict)
    optimizers: dict[str, torch.optim.Optimizer] = field(default_factory=dict)
    soft: Callable[[], torch.Tensor | None] = lambda: None


def minibatches(n: int, size: int, steps: int, g: torch.Generator) -> list[torch.Tensor]:
    """Per-step index batches drawn from successive random permutations of range(n) (as the reference)."""
    size = min(size, n)
    perm = torch.empty(0, dtype=torch.long)
    out = []
    for _ in range(steps):
        if len(perm) < size:
            perm = torch.cat([perm, torch.randperm(n, generator=g)])
        out.append(perm[:size])
        perm = perm[size:]
    return out


class MTTDistiller:
    """Trajectory matching for one stage at a time. A variant (DATM) overrides the hooks below `distill`: the
    initial images, the student's labels, the start-epoch bound of an iteration, the matched parameters and the loss
    above which an iteration skips its update."""

    name = "mtt"

    def __init__(self, ctx):
        self.ctx = ctx
        self.store = ExpertStore(ctx)

    def prepare_experts(self, task: StageTask) -> tuple[str, list[Path]]:
        """(key, paths) of the experts the stage matches, trained now if they are not cached: the base experts, or
        with a PDD transition experts retrained on the earlier stages first."""
        earlier = task.previous if (task.transition and task.previous) else []
        pools = [*task.earlier_pools, task.pool]
        return stage_experts(self.store, task.config, earlier, task.train, task.run_seed, pools)

    def distill(self, task: StageTask) -> StageOutput:
        cfg: MTTConfig = task.config
        ctx, dev = self.ctx, self.ctx.device
        settings = expert_settings(cfg, task.run_seed)
        key, paths = task.experts

        g = torch.Generator().manual_seed(task.seed)
        ws = Workspace.build(ctx, task, cfg.init, g, initial=self.initial_images(task, g))
        labels = self.student_labels(task, ws)
        all_y = ws.all_y
        alpha = torch.tensor(cfg.lr_teacher, device=dev, requires_grad=True)
        opt_img = torch.optim.SGD(ws.param_groups(cfg.lr_img, task.boost_beta), lr=cfg.lr_img, momentum=0.5)
        opt_lr = torch.optim.SGD([alpha], lr=cfg.lr_lr, momentum=0.5)
        net = FlatParams(ctx.make_model().to(dev))
        offset = self.matched_from(cfg, net)
        segments = (cfg.segments or math.ceil(math.sqrt(cfg.syn_steps))) if cfg.memory == "checkpoint" else 1
        size = tuple(ws.images.shape[-2:])
        batch_syn = min(cfg.batch_syn or len(ws.images), len(all_y))  # default: this stage's classes x IPC
        vectorize = vectorized(cfg, dev)
        sample = ws.all_x[:batch_syn]  # a step's batch: what the micro-batch rule sizes
        chunk = None if vectorize or cfg.compile_unroll else micro_batch(cfg.micro_batch, net.model, sample, "unroll")
        compiled = CompiledUnroll(net, dev) if cfg.compile_unroll else None

        def draw(it: int) -> tuple:
            """One trajectory's random choices (expert, start epoch, minibatches, augmentations)."""
            e = int(torch.randint(len(paths), (1,), generator=g))
            t = start_epoch(cfg, g, self.start_bound(cfg, it))
            idx = minibatches(len(all_y), batch_syn, cfg.syn_steps, g)
            return e, t, idx, [ctx.dsa.sample(len(ix), size, g) for ix in idx]

        def student(all_x, all_y, e: int, t: int, idx: list[torch.Tensor], augs: list) -> tuple:
            """One drawn trajectory on the device: its start, its target and its step-j batch. Indices and
            augmentation parameters are copied once, before the unroll, without blocking."""
            traj = self.store.trajectory(paths[e], key, settings.epochs)
            idx = [i.to(dev, non_blocking=True) for i in idx]
            augs = [a if a is None else a.to(dev) for a in augs]

            def batch(j):
                return ctx.dsa.apply(all_x[idx[j]], augs[j]), all_y[idx[j]]

            return traj[t].to(dev), traj[t + cfg.expert_epochs].to(dev), batch

        def match(draws: list[tuple]) -> float:
            """Backpropagate the mean matching loss of the drawn trajectories (1 / trajectories each); return it."""
            k, all_x, all_y = cfg.trajectories, ws.all_x, labels.targets()
            students = [student(all_x, all_y, *d) for d in draws]
            if vectorize and students:
                starts, targets, batches = zip(*students)

                def stacked(j):
                    xs, ys = zip(*(b(j) for b in batches))
                    return torch.stack(xs), torch.stack(ys)

                losses = batched_unroll_backward(
                    net, torch.stack(starts), torch.stack(targets), alpha, stacked, cfg.syn_steps, 1 / k, offset
                )
                return sum(losses) / k
            if compiled is not None:
                return sum(compiled.backward(s, t, alpha, b, cfg.syn_steps, 1 / k) / k for s, t, b in students)
            return sum(
                unroll_backward(net, s, t, alpha, b, cfg.syn_steps, segments, 1 / k, chunk, offset) / k
                for s, t, b in students
            )

        learnable = [*ws.learnable(), alpha, *labels.state.values()]

        def step(it: int) -> float:
            draws = [draw(it) for _ in range(cfg.trajectories)]  # every process draws all: generators stay in step
            local = match([draws[i] for i in ctx.share(cfg.trajectories)])
            return reduce_shared(ctx, learnable, local)

        def alpha_in_range() -> str | None:
            a, top = float(alpha.detach()), cfg.lr_teacher * cfg.max_alpha_factor
            return None if 0 < a <= top else f"alpha left (0, {top:g}]: {a:.4g}"

        loop = DistillLoop(
            ctx,
            task,
            self.name,
            cfg.iterations,
            cfg.checkpoint_every,
            {**ws.tensors(), "alpha": alpha, **labels.state},
            {"img": opt_img, "lr": opt_lr, **labels.optimizers},
            g,
            identity={"key": key},
            check=alpha_in_range,
            postfix=lambda: {"alpha": float(alpha.detach())},
            snapshot=lambda: ws.output(task, float(alpha.detach()), {}, labels.soft()).stage,
            hint="lower method.lr_img or method.lr_lr" + band_hint(task.pool, len(ctx.train_y)),
            skip_above=self.skip_above(cfg),
        )
        losses = loop.run(step)
        log = loop.log(
            losses,
            alpha=float(alpha.detach()),
            experts=len(paths),
            iterations=cfg.iterations,
            batch_syn=batch_syn,
            student_set=len(all_y),
            micro_batch=describe(cfg.micro_batch, chunk),
            vectorized=vectorize,
            compiled_unroll=cfg.compile_unroll,
            **({"matched_from": offset} if offset else {}),
        )
        return ws.output(task, float(alpha.detach()), log, labels.soft())

    # Hooks of the variants (DATM): MTT's own behaviour.

    def initial_images(self, task: StageTask, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The stage's initial images and labels when the variant chooses them (None: `Workspace`'s init)."""
        return None

    def student_labels(self, task: StageTask, ws: Workspace) -> StudentLabels:
        """The labels the student trains on: the hard class ids of its set."""
        return StudentLabels(lambda: ws.all_y)

    def start_bound(self, cfg: MTTConfig, it: int) -> int:
        """Iteration `it` draws start epochs below this bound."""
        return cfg.max_start_epoch

    def matched_from(self, cfg: MTTConfig, net: FlatParams) -> int:
        """The first flat parameter index the matching loss reads (0: all of them)."""
        return 0

    def skip_above(self, cfg: MTTConfig) -> float | None:
        """A matching loss above which an iteration updates nothing (None: every iteration updates)."""
        return None


def vectorized(cfg: MTTConfig, device: torch.device) -> bool:
    """Whether a process unrolls its trajectories together: the recipe's choice, else on GPUs (launch-bound there)
    when there are several trajectories to batch and nothing that needs separate unrolls (checkpoints, chunks,
    compiled unrolls)."""
    if cfg.vectorize_trajectories is not None:
        return cfg.vectorize_trajectories
    separate = cfg.compile_unroll or cfg.memory != "plain" or cfg.micro_batch
    return device.type == "cuda" and cfg.trajectories > 1 and not separate


def check(cfg: MTTConfig, boost_beta: float) -> list[str]:
    errors = []
    if cfg.expert_curriculum != "none":
        epochs = expert_epochs_trained(cfg)
        removal = cfg.curriculum_remove_epochs, cfg.curriculum_remove_fractions
        if len(removal[0]) != len(removal[1]):
            errors.append(
                f"method.curriculum_remove_fractions: {len(removal[1])} fraction(s) for {len(removal[0])} "
                "curriculum_remove_epochs; expected one each"
            )
        if any(not 0 <= f < 1 for f in removal[1]):
            errors.append(f"method.curriculum_remove_fractions: {removal[1]}; expected fractions in [0, 1)")
        last = curriculum(cfg).last_epoch
        if last >= epochs:
            errors.append(
                f"method.expert_curriculum: the schedule runs to epoch {last}, beyond the experts' {epochs} epochs "
                "(max_start_epoch + expert_epochs + expert_extra_epochs); raise method.expert_extra_epochs or "
                "shorten curriculum_add_end / curriculum_remove_epochs"
            )
    if cfg.min_start_epoch >= cfg.max_start_epoch:
        errors.append(
            f"method.min_start_epoch: {cfg.min_start_epoch} leaves no start epoch below max_start_epoch "
            f"{cfg.max_start_epoch} (starts are drawn from min_start_epoch <= t < max_start_epoch)"
        )
    if cfg.vectorize_trajectories and (cfg.memory != "plain" or (cfg.micro_batch or 0) > 0):
        errors.append(
            "method.vectorize_trajectories: needs method.memory 'plain' and no method.micro_batch (the vmapped "
            f"unroll keeps the whole graph); got memory {cfg.memory!r}, micro_batch {cfg.micro_batch}"
        )
    if cfg.compile_unroll and (cfg.vectorize_trajectories or cfg.memory != "plain" or (cfg.micro_batch or 0) > 0):
        errors.append(
            "method.compile_unroll: unrolls each trajectory alone, whole batches, with the memory of one step; it "
            "takes no method.vectorize_trajectories, method.memory 'checkpoint' or method.micro_batch; got "
            f"vectorize_trajectories {cfg.vectorize_trajectories}, memory {cfg.memory!r}, "
            f"micro_batch {cfg.micro_batch}"
        )
    return errors


SPEC = MethodSpec(
    MTTConfig,
    MTTDistiller,
    Capabilities(needs_experts=True, learns_lr=True, functional=True),
    checks=check,
    revisions=(
        "start epochs are drawn below max_start_epoch, as the official code does (they included it), and in a "
        "multi-stage run each student step draws classes x the stage's IPC images from the union (it trained on the "
        "whole union)",
    ),
)
