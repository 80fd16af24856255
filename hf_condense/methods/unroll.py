"""The differentiable SGD unroll of trajectory matching, plain or in checkpointed segments.

theta_{j+1} = theta_j - alpha * grad CE(f(theta_j, x_j), y_j), j < N, on one flat parameter vector. The plain unroll
keeps the whole graph (memory grows with N x batch). The checkpointed unroll stores only the segment starts on a
first pass without graph, then replays each segment with graph from last to first, carrying the adjoint of theta
across segment boundaries: the same gradients, with the memory of one segment and one extra first-order pass.
Minibatches and augmentation parameters must be fixed per step (`batch(j)`), so the replay is exact.
The batched unroll runs K students (K trajectories) at once under torch.func.vmap: one batched kernel per layer
instead of K, which pays where kernel launches, not arithmetic, bound an unroll (small models on GPUs).
The compiled unroll (`CompiledUnroll`) runs each step's reverse pass as one compiled pure function: the GPU path,
CUDA graphs by torch.compile's reduce-overhead mode.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch.func import grad, vmap

from ..models.compiling import compile_failed, compiling_failed
from ..models.functional import FlatParams

Batch = Callable[[int], tuple[torch.Tensor, torch.Tensor]]  # step j -> (inputs, labels), built from leaf images


def segment_bounds(steps: int, segments: int) -> list[range]:
    """Split range(steps) into `segments` contiguous, near-equal chunks."""
    segments = max(1, min(segments, steps))
    size = math.ceil(steps / segments)
    return [range(i, min(i + size, steps)) for i in range(0, steps, size)]


def sgd_steps(
    net: FlatParams,
    theta: torch.Tensor,
    alpha: torch.Tensor,
    batch: Batch,
    steps: Sequence[int],
    keep_graph: bool,
    micro_batch: int | None = None,
) -> torch.Tensor:
    """Run student SGD steps from theta. With keep_graph the result stays differentiable in everything; without,
    theta is detached after every step (memory of one step). Both build the same double-backward graph, so a
    replayed segment is bitwise identical to its first pass (the fused first-order kernels differ in round-off)."""
    for j in steps:
        x, y = batch(j)
        theta = theta - alpha * net.grad(theta, x, y, create_graph=True, micro_batch=micro_batch)
        if not keep_graph:
            theta = theta.detach().requires_grad_(True)
    return theta


def matching_loss(theta_n: torch.Tensor, start: torch.Tensor, target: torch.Tensor, offset: int = 0) -> torch.Tensor:
    """MTT's normalised parameter distance ||theta_N - theta*_{t+M}||^2 / ||theta*_t - theta*_{t+M}||^2, over the flat
    parameters from index `offset` on (PAD's parameter selection drops the shallow ones from both norms)."""
    theta_n, start, target = theta_n[..., offset:], start[..., offset:], target[..., offset:]
    return ((theta_n - target) ** 2).sum(-1) / ((start - target) ** 2).sum(-1)


def unroll_backward(
    net: FlatParams,
    start: torch.Tensor,
    target: torch.Tensor,
    alpha: torch.Tensor,
    batch: Batch,
    steps: int,
    segments: int = 1,
    scale: float = 1.0,
    micro_batch: int | None = None,
    offset: int = 0,
) -> float:
    """Unroll `steps` student steps from `start`, backpropagate `scale` x the matching loss (over the parameters
    from `offset` on) into every leaf that `batch` and `alpha` depend on (accumulating .grad: images, alpha, learned
    labels), and return the loss. segments > 1 bounds memory (see module doc); micro_batch chunks each step's batch
    (`FlatParams.grad`). Labels may be class ids or class distributions (soft labels)."""
    bounds = segment_bounds(steps, segments)
    starts = [start.detach()]
    with torch.enable_grad():
        for seg in bounds[:-1]:  # first pass without graph: remember where each segment starts
            theta = sgd_steps(
                net, starts[-1].detach().requires_grad_(True), alpha.detach(), batch, seg, False, micro_batch
            )
            starts.append(theta.detach())
        adjoint = None
        loss_value = float("nan")
        for s in reversed(range(len(bounds))):
            theta0 = starts[s].detach().clone().requires_grad_(True)
            theta_end = sgd_steps(net, theta0, alpha, batch, bounds[s], True, micro_batch)
            if s == len(bounds) - 1:
                loss = matching_loss(theta_end, start, target, offset)
                loss_value = float(loss.detach())
                (loss * scale).backward()  # into the images, alpha and theta0 (all leaves)
            else:
                theta_end.backward(adjoint)
            adjoint = theta0.grad
    return loss_value


def batched_unroll_backward(
    net: FlatParams,
    starts: torch.Tensor,
    targets: torch.Tensor,
    alpha: torch.Tensor,
    batches: Batch,
    steps: int,
    scale: float = 1.0,
    offset: int = 0,
) -> list[float]:
    """K plain unrolls at once: student k starts at starts[k] (K x P) and is matched to targets[k]; `batches(j)` gives
    step j's inputs (K x B x C x H x W) and labels (K x B, or K x B x classes). Backpropagates `scale` x the sum of the
    K matching losses (accumulating .grad, as K calls of `unroll_backward` would) and returns the K losses."""

    def student_loss(theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(net(theta, x), y)

    student_grads = vmap(grad(student_loss))
    starts, targets = starts.detach(), targets.detach()
    with torch.enable_grad():
        theta = starts
        for j in range(steps):
            x, y = batches(j)
            theta = theta - alpha * student_grads(theta, x, y)
        losses = matching_loss(theta, starts, targets, offset)
        (losses.sum() * scale).backward()
    return losses.detach().tolist()


class CompiledUnroll:
    """`unroll_backward` as compiled per-step VJPs, for launch-bound unrolls (small models on GPUs).

    A first-order pass stores each theta_j; then, from the last step to the first, one compiled pure function (a
    torch.func grad of a grad) gives the VJP of theta_j - alpha * grad CE in theta_j, the step's inputs and alpha, so
    the step's forward, backward and double backward are one graph: fused by inductor, replayed as a CUDA graph on GPUs
    (mode reduce-overhead). Memory of one step; gradients equal the plain unroll's up to float round-off (on CPUs with
    inductor's channels_last layouts off: oneDNN's channels_last convolutions err beyond round-off in a step's VJP,
    benchmarks/results/unroll_speed.md). Shapes are fixed per stage, so each compiles once. Where compiling fails, one
    warning and the plain unroll from then on.
    """

    def __init__(self, net: FlatParams, device: torch.device):
        self.net = net
        cuda = torch.device(device).type == "cuda"
        mode = "reduce-overhead" if cuda else None
        step_grad = grad(lambda theta, x, y: F.cross_entropy(net(theta, x), y))

        def step_vjp(theta, x, y, cotangent, alpha):
            def pullback(theta, x, alpha):  # <cotangent, theta - alpha * g>, less its theta term (added outside)
                return -(alpha * step_grad(theta, x, y) * cotangent).sum()

            return grad(pullback, argnums=(0, 1, 2))(theta, x, alpha)

        self.forward = torch.compile(step_grad, mode=mode, dynamic=False)
        self.reverse = torch.compile(step_vjp, mode=mode, dynamic=False)
        self.options = {} if cuda else {"layout_optimization": False}

    def backward(
        self, start: torch.Tensor, target: torch.Tensor, alpha: torch.Tensor, batch: Batch, steps: int, scale=1.0
    ) -> float:
        """As `unroll_backward(net, start, target, alpha, batch, steps, scale=scale)`: accumulate .grad in every leaf
        `batch` and `alpha` depend on, return the matching loss."""
        if not compiling_failed():
            try:
                import torch._inductor.config as inductor_config

                with inductor_config.patch(self.options):
                    return self._backward(start, target, alpha, batch, steps, scale)
            except torch._dynamo.exc.TorchDynamoException as e:  # nothing accumulated yet: the plain unroll redoes it
                compile_failed(e)
        return unroll_backward(self.net, start, target, alpha, batch, steps, scale=scale)

    def _backward(self, start, target, alpha, batch, steps, scale) -> float:
        start, target, lr = start.detach(), target.detach(), alpha.detach()
        thetas = [start]
        with torch.no_grad():
            for j in range(steps):
                x, y = batch(j)
                thetas.append(thetas[-1] - lr * self.forward(thetas[-1], x, y))
        theta_n = thetas[-1].requires_grad_(True)
        with torch.enable_grad():
            loss = matching_loss(theta_n, start, target)
            (cotangent,) = torch.autograd.grad(loss * scale, theta_n)
        inputs, input_grads, lr_grad = [], [], torch.zeros_like(lr)
        for j in reversed(range(steps)):
            with torch.enable_grad():
                x, y = batch(j)
            d_theta, d_x, d_lr = self.reverse(thetas[j], x.detach(), y, cotangent, lr)
            cotangent, lr_grad = cotangent + d_theta, lr_grad + d_lr
            if x.requires_grad:
                inputs.append(x)
                input_grads.append(d_x.clone())  # a CUDA graph's outputs are overwritten by its next replay
        if alpha.requires_grad:
            inputs.append(alpha)
            input_grads.append(lr_grad)
        if inputs:
            torch.autograd.backward(inputs, input_grads)
        return float(loss.detach())
