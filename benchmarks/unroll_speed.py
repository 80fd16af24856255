"""MTT unroll and expert-training speed: the plain unroll against the library's default (its CPU micro-batch rule;
in training also its pooling form) and each candidate optimisation, in one run on this machine.

plain: the network with ATen's avg_pool2d and whole batches (the library before `pooling.AvgPool2d` and the
micro-batch rule). Shapes of issue #43: CIFAR-10 32x32x3, ConvNet-D3W32 and D3W128, IPC 1 / 10 / 50, all images in
every step, syn_steps 20, DSA; random data (timing only). Each configuration runs in a fresh process (its peak
resident memory, ru_maxrss, is its own); times are the best of a few iterations. Gradient error: each mode's float32
image gradient of a 3-step unroll against the float64 plain unroll of the same problem (a 20-step float32 unroll of
random data differs from float64 by ~1e-2 in any summation order, which would hide what a mode changes).
Expert training: the library's `train_epoch` (batch 256, DSA, SGD) over 1024 random images: plain, the pooling form
alone, and the default (pooling form and chunks). The rule section sweeps chunk sizes (unroll: syn_steps 5) to show
where CHUNK_BYTES comes from; the candidates section times the other optimisations of the issue at W32, IPC 10,
syn_steps 5, each against plain.

    python benchmarks/unroll_speed.py     # ~25 min here; writes benchmarks/results/unroll_speed.{json,md}
    python benchmarks/unroll_speed.py cuda
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from baseline import aten_pooling
from timing import seconds_since, sync
from torch import nn

import hf_condense  # noqa: F401  (registers the ConvNets with timm)
from hf_condense.core.io import write_json, write_text
from hf_condense.data.augment import DSA
from hf_condense.methods.unroll import CompiledUnroll, unroll_backward
from hf_condense.models import chunking
from hf_condense.models.functional import FlatParams
from hf_condense.models.pooling import as_convolution
from hf_condense.models.training import train_epoch

RESULTS = Path(__file__).resolve().parent / "results" / "unroll_speed"
STEPS = 20
# (width, IPC, mode, segments): mode "plain" = whole batches and ATen's pooling kernel (`baseline.aten_pooling`),
# "default" = what the library does (chunks on CPU; unrolls keep ATen's pooling, `pooling.as_convolution`)
UNROLLS = [
    (32, 1, "plain", 1),
    (32, 1, "default", 1),
    (32, 10, "plain", 1),
    (32, 10, "default", 1),
    (32, 50, "plain", 1),
    (32, 50, "default", 1),
    (128, 1, "plain", 1),
    (128, 1, "default", 1),
    (128, 10, "plain", 1),
    (128, 10, "default", 1),
]
# IPC 50 at W128 is left out here: its plain graph (~35 GB) does not fit 24 GB, and its checkpointed pair takes ~10
# minutes (benchmarks/results/unroll_memory.md has it: micro-batched + checkpointed 0.63x the checkpointed time)
if len(sys.argv) > 1 and sys.argv[1] == "cuda":
    UNROLLS += [(128, 50, "plain", 1), (128, 50, "default", 1)]
RULE_UNROLL = [4, 8, 16, 32, 0]  # chunk sizes swept at W32 and W128, IPC 10 (0: whole batch)
RULE_TRAIN = [8, 16, 32, 64, 0]


def problem(width: int, ipc: int, device: str, dtype=torch.float32, aten: bool = False):
    """A seeded unroll problem; drawn in float32 and cast, so that the float64 reference is the same problem. `aten`:
    the plain network (ATen's pooling kernel, `baseline.aten_pooling`)."""
    torch.manual_seed(0)
    net = FlatParams(network(width, aten))
    start = net.flatten()
    target = start + 0.01 * torch.randn_like(start)
    images = torch.randn(10 * ipc, 3, 32, 32)
    net.model.to(device, dtype)
    start, target = start.to(device, dtype), target.to(device, dtype)
    images = images.to(device, dtype).requires_grad_(True)
    labels = torch.arange(10, device=device).repeat_interleave(ipc)
    alpha = torch.tensor(0.01, device=device, dtype=dtype, requires_grad=True)
    return net, start, target, images, labels, alpha


def network(width: int, aten: bool = False) -> nn.Module:
    """ConvNet-D3W{width} for CIFAR-10 shapes; `aten`: with ATen's pooling (the plain network)."""
    model = timm.create_model(f"convnet_d3w{width}", num_classes=10, in_chans=3, img_size=32)
    return aten_pooling(model) if aten else model


def unroll_grad(width, ipc, chunk, segments, steps, device, dtype=torch.float32, iters=1, aten=False):
    """(best seconds, image gradient) of `iters` unroll backward passes."""
    net, start, target, images, labels, alpha = problem(width, ipc, device, dtype, aten)
    dsa, g = DSA(), torch.Generator().manual_seed(0)
    augs = [dsa.sample(len(images), (32, 32), g) for _ in range(steps)]
    augs = [_cast(a, dtype) for a in augs]
    times = []
    for _ in range(iters):
        images.grad = alpha.grad = None
        sync(device)
        t0 = time.perf_counter()
        unroll_backward(
            net, start, target, alpha, lambda j: (dsa.apply(images, augs[j]), labels), steps, segments, 1.0, chunk
        )
        times.append(seconds_since(t0, device))
    return min(times), images.grad.detach().double()


def _cast(p, dtype):
    """Augmentation parameters in the problem's float type (the float64 reference)."""
    if p is None:
        return p
    return type(p)(p.family, {k: v.to(dtype) if v.is_floating_point() else v for k, v in p.values.items()})


def chosen(mode: str, width: int, ipc: int, device: str, kind: str = "unroll") -> int | None:
    net, _, _, images, *_ = problem(width, ipc, device)
    return None if mode == "plain" else chunking.micro_batch(None, net.model, images, kind)


def measure_unroll(width: int, ipc: int, mode: str, segments: int, device: str) -> dict:
    chunk, aten = chosen(mode, width, ipc, device), mode == "plain"
    slow = device == "cpu" and width >= 128
    iters = 1 if slow and ipc >= 50 else 2 if slow and ipc >= 10 else 3
    seconds, _ = unroll_grad(width, ipc, chunk, segments, STEPS, device, iters=iters, aten=aten)
    peak = (
        torch.cuda.max_memory_allocated() / 1024**3
        if device == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    )
    _, g32 = unroll_grad(width, ipc, chunk, 1, 3, device, aten=aten)
    _, g64 = unroll_grad(width, ipc, None, 1, 3, device, torch.float64)
    return {
        "width": width,
        "ipc": ipc,
        "mode": mode,
        "segments": segments,
        "micro_batch": chunk,
        "seconds_per_iteration": seconds,
        "peak_memory_gb": peak,
        "grad_rel_error_vs_float64": float((g32 - g64).norm() / g64.norm()),
    }


def training_rates(width: int, configs: dict, device: str, n: int = 1024, rounds: int = 3) -> dict:
    """Images per second of the library's train_epoch (batch 256, DSA) for each config name -> (ATen pooling, chunk
    size; 0: whole batches), one network per config from the same seed, over `rounds` interleaved epochs each after
    a warm-up round, best of each: interleaving, because a process's first epochs are slower (the allocator grows its
    arenas) and would otherwise favour whichever config runs last."""
    runs = {}
    for name, (aten, chunk) in configs.items():
        torch.manual_seed(0)
        model = network(width, aten).to(device)
        runs[name] = (model, torch.optim.SGD(model.parameters(), lr=0.01), chunk)
    x, y = torch.randn(n, 3, 32, 32), torch.randint(0, 10, (n,))
    dsa, g = DSA(), torch.Generator().manual_seed(0)
    best = {name: float("inf") for name in configs}
    for r in range(rounds + 1):
        for name, (model, opt, chunk) in runs.items():
            sync(device)
            t0 = time.perf_counter()
            train_epoch(model, opt, x, y, 256, dsa, g, torch.device(device), micro_batch=chunk)
            if r:
                best[name] = min(best[name], seconds_since(t0, device))
    return {name: n / t for name, t in best.items()}


def measure_training(width: int, device: str) -> dict:
    """plain (ATen pooling, whole batches), the pooling form alone, and the library's default (its pooling and
    micro-batch rule)."""
    chunk = chosen("default", width, 25, device, "train")  # a 256 batch: IPC 25 gives 250 images, same rule
    configs = {"plain": (True, 0), "pooling": (False, 0), "default": (False, chunk or 0)}
    rates = training_rates(width, configs, device)
    return {
        "width": width,
        "micro_batch": chunk,
        "plain_images_per_s": rates["plain"],
        "pooling_images_per_s": rates["pooling"],
        "default_images_per_s": rates["default"],
    }


def measure_rule(width: int, device: str, rounds: int = 2) -> dict:
    """Unroll seconds (IPC 10, 5 steps) and training seconds per image for each chunk size, interleaved rounds."""
    unroll = {c: float("inf") for c in RULE_UNROLL}
    unroll_grad(width, 10, None, 1, 5, device)  # warm-up
    for _ in range(rounds):
        for c in RULE_UNROLL:
            unroll[c] = min(unroll[c], unroll_grad(width, 10, c or None, 1, 5, device)[0])
    rates = training_rates(width, {c: (False, c) for c in RULE_TRAIN}, device, rounds=2)
    train = {c: 1 / r for c, r in rates.items()}
    return {"width": width, "unroll_seconds": unroll, "train_seconds_per_image": train}


class _Pool(nn.Module):
    """2x2 average pooling as the sum of four strided slices (a candidate double-backward form)."""

    def forward(self, x):
        return (x[:, :, 0::2, 0::2] + x[:, :, 1::2, 0::2] + x[:, :, 0::2, 1::2] + x[:, :, 1::2, 1::2]) * 0.25


class _InstanceNorm(nn.Module):
    """GroupNorm(C, C) as per-channel mean and variance (a candidate double-backward form); same parameter names."""

    def __init__(self, norm: nn.GroupNorm):
        super().__init__()
        self.weight, self.bias = norm.weight, norm.bias

    def forward(self, x):
        var, mean = torch.var_mean(x, (2, 3), correction=0, keepdim=True)
        scale = torch.rsqrt(var + 1e-5) * self.weight.view(1, -1, 1, 1)
        return x * scale + (self.bias.view(1, -1, 1, 1) - mean * scale)


def measure_candidates(device: str, width: int = 32, ipc: int = 10, steps: int = 5, rounds: int = 3) -> dict:
    """Seconds of a `steps`-step unroll at W32, IPC 10 for each candidate and for plain (ATen pooling), timed in
    alternating rounds next to it (a drifting machine shifts both), and each candidate's gradient error against
    float64 (3 steps). Candidates edit the plain network, except the library's pooling form."""
    out = {}

    def build(edit=None, step=None, layout=None, reverse=None, aten=True):
        net, start, target, images, labels, alpha = problem(width, ipc, device, aten=aten)
        pooling = contextlib.nullcontext if aten else as_convolution  # the library's form, forced on in the unroll
        if edit:
            edit(net.model)
        if reverse is not None:
            return reverse(net, start, target, images, labels, alpha)
        x_in = (lambda: images.contiguous(memory_format=torch.channels_last)) if layout else (lambda: images)
        if step is None:

            def step(theta, x, y):
                return theta - alpha * net.grad(theta, x, y, True)

        def unroll(n):
            images.grad = None
            theta = start.clone().requires_grad_(True)
            with pooling():
                for _ in range(n):
                    theta = step(theta, x_in(), labels)
                ((theta - target) ** 2).sum().backward()
            return images.grad.detach().double()

        return unroll

    def seconds(unroll) -> float:
        sync(device)
        t0 = time.perf_counter()
        unroll(steps)
        return seconds_since(t0, device)

    net64, s64, t64, im64, lab, a64 = problem(width, ipc, device, torch.float64)
    theta = s64.clone().requires_grad_(True)
    for _ in range(3):
        theta = theta - a64 * net64.grad(theta, im64, lab, True)
    g64 = torch.autograd.grad(((theta - t64) ** 2).sum(), im64)[0]
    plain = build()
    plain(steps)  # warm-up

    def run(name, **kw):
        unroll = build(**kw)
        t0 = time.perf_counter()
        unroll(steps)  # warm-up (and compilation)
        first = time.perf_counter() - t0
        times, plain_times = [], []
        for _ in range(rounds):
            plain_times.append(seconds(plain))
            times.append(seconds(unroll))
        err = float((unroll(3) - g64).norm() / g64.norm())
        out[name] = {
            "seconds": min(times),
            "plain_seconds": min(plain_times),
            "first_seconds": first,
            "grad_rel_error_vs_float64": err,
        }

    def swap(kind):
        def edit(model):
            for i, m in enumerate(model.features):
                if kind == "pool" and isinstance(m, nn.AvgPool2d):
                    model.features[i] = _Pool()
                if kind == "norm" and isinstance(m, nn.GroupNorm):
                    model.features[i] = _InstanceNorm(m)

        return edit

    run("plain")  # against itself: the spread of the timing
    run("avg-pool as a depthwise convolution (pooling.as_convolution; kept for first-order steps only)", aten=False)
    run("avg-pool as strided slices", edit=swap("pool"))
    run("instance norm as per-channel mean/variance", edit=swap("norm"))
    run("channels_last input", layout=True)

    def compiled_step():
        net, *_ = problem(width, ipc, device, aten=True)
        alpha = torch.tensor(0.01, device=device, requires_grad=True)
        g = torch.func.grad(lambda th, x, y: F.cross_entropy(net(th, x), y))
        return torch.compile(lambda th, x, y: th - alpha * g(th, x, y), dynamic=False)

    def attempt(name, **kw):
        try:
            run(name, **kw)
        except Exception as e:  # reported, not fatal: the candidate either works here or says why not
            out[name] = {"error": f"{type(e).__name__}: {e}"[:200]}

    attempt("torch.compile of one student step (torch.func.grad)", step=compiled_step())
    for form in ("reverse-over-forward", "forward-over-reverse"):
        attempt(f"per-step VJPs as {form} (torch.func), eager", reverse=_per_step_vjps(form))
    if device == "cuda":  # CUDA graphs; the layouts question is oneDNN's (CPU)
        attempt("compiled per-step VJPs (method.compile_unroll, CUDA graphs)", reverse=_compiled_reverse)
    for layout in (True, False) if device == "cpu" else ():
        attempt(
            f"compiled per-step VJPs (method.compile_unroll), inductor channels_last layouts {('off', 'on')[layout]}",
            reverse=lambda *p, layout=layout: _compiled_reverse(*p, layout=layout),
        )
    return out


def _per_step_vjps(form: str):
    """The unroll's image gradient from per-step VJPs: a first-order pass stores theta_j; then, from the last step to
    the first, the derivative of <v, grad CE(theta_j, x)> in (theta_j, x), the VJP of theta_j - alpha * grad CE, in
    one of two forms other than autograd's gradient of a gradient. "reverse-over-forward": the gradient of a jvp
    (<v, grad CE> is CE's derivative along v); "forward-over-reverse": the jvp of CE's gradient in (theta, x) along
    (v, 0) (the Hessian is symmetric, so it gives both blocks)."""

    def build(net, start, target, images, labels, alpha):
        lr = alpha.detach()

        def loss(theta, x):
            return F.cross_entropy(net(theta, x), labels)

        step_grad = torch.func.grad(loss)
        if form == "reverse-over-forward":
            directional = lambda theta, x, v: torch.func.jvp(lambda t: loss(t, x), (theta,), (v,))[1]  # noqa: E731
            pullback = torch.func.grad(directional, (0, 1))
        else:
            both = torch.func.grad(loss, (0, 1))
            pullback = lambda theta, x, v: torch.func.jvp(lambda t: both(t, x), (theta,), (v,))[1]  # noqa: E731

        def run(n):
            x, thetas = images.detach(), [start]
            with torch.no_grad():
                for _ in range(n):
                    thetas.append(thetas[-1] - lr * step_grad(thetas[-1], x))
            v, image_grad = 2 * (thetas[-1] - target), torch.zeros_like(x)  # v: the adjoint of ||theta_n - target||^2
            for j in reversed(range(n)):
                d_theta, d_x = pullback(thetas[j], x, v)
                v, image_grad = v - lr * d_theta, image_grad - lr * d_x
            return image_grad.double()

        return run

    return build


def _compiled_reverse(net, start, target, images, labels, alpha, layout: bool = False):
    """The library's compiled unroll (`CompiledUnroll`: a first-order pass, then one compiled per-step VJP from the
    last step to the first), returning the image gradient; `layout` turns inductor's channels_last layouts back on
    (the library turns them off on CPUs)."""
    torch._dynamo.reset()  # dynamo would otherwise reuse the other layout's code (the config is not a guard)
    unroll = CompiledUnroll(net, images.device)
    if layout:
        unroll.options = {}

    scale = float(((start - target) ** 2).sum())  # MTT's normalised loss times this: the plain candidates' loss

    def run(n):
        images.grad = None
        unroll.backward(start, target, alpha, lambda j: (images, labels), n, scale)
        return images.grad.detach().double()

    return run


def child(kind: str, *args: str) -> dict:
    device = args[-1]
    if kind == "unroll":
        w, ipc, mode, seg = int(args[0]), int(args[1]), args[2], int(args[3])
        return measure_unroll(w, ipc, mode, seg, device)
    if kind == "training":
        return measure_training(int(args[0]), device)
    if kind == "rule":
        return measure_rule(int(args[0]), device)
    return measure_candidates(device)


def spawn(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1][:300] if out.stderr.strip() else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(device: str = "cpu") -> None:
    results = RESULTS if device == "cpu" else Path(f"{RESULTS}_{device}")
    partial = Path(f"{results}.partial.json")  # resumable: a killed run keeps what it measured
    done = json.loads(partial.read_text()) if partial.exists() else {}

    def get(name, *args):
        if name not in done:
            done[name] = spawn(*args, device)
            write_json(partial, done)
            print(name, json.dumps(done[name])[:200], flush=True)
        return done[name]

    rule = [get(f"rule {w}", "rule", str(w)) for w in (32, 128)]  # first: where the rule's constants come from
    training = [get(f"training {w}", "training", str(w)) for w in (32, 128)]
    unrolls = [get(f"unroll {w} {ipc} {m} {s}", "unroll", str(w), str(ipc), m, str(s)) for w, ipc, m, s in UNROLLS]
    candidates = get("candidates", "candidates")
    machine = torch.cuda.get_device_name() if device == "cuda" else f"{os.cpu_count()}-core CPU"
    write_json(
        f"{results}.json",
        {
            "machine": machine,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "syn_steps": STEPS,
            "chunk_bytes": chunking.CHUNK_BYTES,
            "unrolls": unrolls,
            "training": training,
            "rule": rule,
            "candidates": candidates,
        },
    )
    write_text(f"{results}.md", report(machine, unrolls, training, rule, candidates))
    partial.unlink()
    print(Path(f"{results}.md").read_text())


def report(machine, unrolls, training, rule, candidates) -> str:
    lines = [
        f"MTT unroll on CIFAR-10 shapes (all images every step, syn_steps {STEPS}, DSA), {machine}, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads; one run of `python benchmarks/unroll_speed.py`. "
        "plain: ATen's avg_pool2d, whole batches; default: the library (its automatic micro-batch choice, "
        "`hf_condense.models.chunking`, CHUNK_BYTES "
        f"{ {k: f'{v >> 20} MiB' for k, v in chunking.CHUNK_BYTES.items()} }; in training loops also its pooling "
        "form, `pooling.as_convolution`; unrolls keep ATen's pooling). Grad error: float32 image gradient of a "
        "3-step unroll vs the float64 plain unroll.",
        "",
        "| model | IPC | mode | segments | micro-batch | s / iteration | default / plain | peak memory (GB) "
        "| grad rel. error vs float64 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    plain = {(r["width"], r["ipc"]): r for r in unrolls if r.get("mode") == "plain"}
    for r in unrolls:
        if "error" in r:
            lines.append(f"| – | – | – | – | – | failed: {r['error']} | – | – | – |")
            continue
        base = plain.get((r["width"], r["ipc"]))
        ratio = f"{r['seconds_per_iteration'] / base['seconds_per_iteration']:.2f}" if base else "–"
        lines.append(
            f"| ConvNet-D3W{r['width']} | {r['ipc']} | {r['mode']} | {r['segments']} | {r['micro_batch'] or 'all'} "
            f"| {r['seconds_per_iteration']:.3g} | {ratio} | {r['peak_memory_gb']:.2f} "
            f"| {r['grad_rel_error_vs_float64']:.1e} |"
        )
    lines += [
        "",
        "Expert training (the library's train_epoch, batch 256, DSA, SGD):",
        "",
        "| model | default micro-batch | plain images/s | pooling form, whole batches | default images/s | speed-up |",
        "|---|---|---|---|---|---|",
    ]
    for r in training:
        if "error" not in r:
            lines.append(
                f"| ConvNet-D3W{r['width']} | {r['micro_batch'] or 'all'} | {r['plain_images_per_s']:.0f} | "
                f"{r['pooling_images_per_s']:.0f} | {r['default_images_per_s']:.0f} | "
                f"{r['default_images_per_s'] / r['plain_images_per_s']:.2f}x |"
            )
    lines += [
        "",
        "Rule sweep (time relative to the whole batch; unroll: IPC 10, syn_steps 5; training: per image):",
        "",
    ]
    for r in rule:
        if "error" in r:
            continue
        u, t = r["unroll_seconds"], r["train_seconds_per_image"]
        lines.append(
            f"- ConvNet-D3W{r['width']}: unroll "
            + ", ".join(f"{k if k != '0' else 'all'}: {v / u['0']:.2f}" for k, v in u.items())
            + "; training "
            + ", ".join(f"{k if k != '0' else 'all'}: {v / t['0']:.2f}" for k, v in t.items())
        )
    lines += [
        "",
        "Candidates (W32, IPC 10, 5 steps, each timed in alternating rounds with plain; kept only at 1.2x or better "
        "in this micro-benchmark):",
        "",
    ]
    for name, r in ({"candidates": candidates} if "error" in candidates else candidates).items():
        if "error" in r:
            lines.append(f"- {name}: fails here ({r['error']})")
            continue
        base = r["plain_seconds"]
        lines.append(
            f"- {name}: {r['seconds'] / base:.2f}x plain's time ({r['seconds']:.3f} s against {base:.3f} s; first "
            f"call {r['first_seconds']:.1f} s), grad error {r['grad_rel_error_vs_float64']:.1e}"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(child(*sys.argv[2:])))
    else:
        main(*sys.argv[1:])
