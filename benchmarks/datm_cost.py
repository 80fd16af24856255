"""What DATM adds to an MTT iteration of the same shapes (issue #63: at most 1.1x), in one run on this machine.

An iteration as the distillers run it (methods/mtt.py's step, with DATM's hooks): the unroll's backward on a batch of
classes x IPC DSA-augmented images, then the optimiser steps. MTT: hard labels, SGD on the images and the step size.
DATM: the same, plus its labels (the softmax of learnable logits, concatenated with frozen earlier labels, rebuilt
every iteration; SGD with momentum on the logits) and, for PAD, the matching loss over the deeper parameters only.
Start-range bookkeeping (an integer bound) and the threshold test (a comparison) are left out: they cost nothing
measurable. Random data (timing only), CIFAR-10 shapes, ConvNet-D3W32 and D3W128, IPC 10, syn_steps 20; MTT and DATM
alternate round by round, so both see the same machine load; the ratio is of the median times.

    python benchmarks/datm_cost.py          # ~10 min here; writes benchmarks/results/datm_cost.{json,md}
    python benchmarks/datm_cost.py cuda
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import timm
import torch
from timing import seconds_since, sync

import hf_condense  # noqa: F401  (registers the ConvNets with timm)
from hf_condense.core.io import write_json, write_text
from hf_condense.data.augment import DSA
from hf_condense.methods.unroll import unroll_backward
from hf_condense.models.functional import FlatParams

RESULTS = Path(__file__).resolve().parent / "results" / "datm_cost"
STEPS, IPC, ROUNDS = 20, 10, 5
CASES = [(32, "mtt", 0.0), (32, "datm", 0.0), (32, "datm", 0.25), (128, "mtt", 0.0), (128, "datm", 0.0)]


def iteration(width: int, device: str):
    """The shared problem of one width: (run(kind, match_from) -> seconds of one iteration)."""
    torch.manual_seed(0)
    net = FlatParams(timm.create_model(f"convnet_d3w{width}", num_classes=10, in_chans=3, img_size=32).to(device))
    start = net.flatten().detach()
    target = start + 0.01 * torch.randn_like(start)
    images = torch.randn(10 * IPC, 3, 32, 32, device=device, requires_grad=True)
    hard = torch.arange(10, device=device).repeat_interleave(IPC)
    logits = torch.randn(10 * IPC, 10, device=device, requires_grad=True)
    alpha = torch.tensor(0.01, device=device, requires_grad=True)
    dsa, g = DSA(), torch.Generator().manual_seed(0)
    opts = {
        "img": torch.optim.SGD([images], lr=100, momentum=0.5),
        "lr": torch.optim.SGD([alpha], lr=1e-5, momentum=0.5),
        "label": torch.optim.SGD([logits], lr=2, momentum=0.9),
    }
    frozen = torch.zeros(0, 10, device=device)

    def run(kind: str, match_from: float) -> float:
        augs = [dsa.sample(len(images), (32, 32), g) for _ in range(STEPS)]
        active = [o for name, o in opts.items() if kind == "datm" or name != "label"]
        sync(device)
        t0 = time.perf_counter()
        for o in active:
            o.zero_grad(set_to_none=True)
        labels = torch.cat([frozen, logits.softmax(1)]) if kind == "datm" else hard
        offset = int(match_from * net.size)
        batch = lambda j: (dsa.apply(images, augs[j]), labels)  # noqa: E731 (the step's batch, as the distiller's)
        unroll_backward(net, start, target, alpha, batch, STEPS, offset=offset)
        for o in active:
            o.step()
        return seconds_since(t0, device)

    return run


def main(device: str = "cpu") -> None:
    times: dict[tuple, list[float]] = {case: [] for case in CASES}
    runs = {w: iteration(w, device) for w in sorted({w for w, _, _ in CASES})}
    for w in runs:  # warm-up
        runs[w]("mtt", 0.0)
        runs[w]("datm", 0.0)
    for _ in range(ROUNDS):
        for case in CASES:
            times[case].append(runs[case[0]](case[1], case[2]))
    rows = []
    for w, kind, frac in CASES:
        median = statistics.median(times[(w, kind, frac)])
        base = statistics.median(times[(w, "mtt", 0.0)])
        rows.append({"width": w, "method": kind, "match_from": frac, "seconds": median, "ratio": median / base})
    meta = {"device": device, "threads": torch.get_num_threads(), "torch": torch.__version__, "rounds": ROUNDS}
    suffix = "" if device == "cpu" else f"_{device}"
    write_json(RESULTS.with_name(RESULTS.name + suffix + ".json"), {**meta, "rows": rows})
    lines = [
        f"# DATM's cost per iteration against MTT's ({device})",
        "",
        f"One run of `python benchmarks/datm_cost.py{'' if device == 'cpu' else ' ' + device}` (module docstring: "
        f"what an iteration is); {meta['threads']} thread(s), torch {meta['torch']}; CIFAR-10 shapes, IPC {IPC}, "
        f"syn_steps {STEPS}; median of {ROUNDS} alternating rounds.",
        "",
        "| model | method | match_from | s / iteration | / MTT |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        name = "PAD (DATM + parameter selection)" if r["match_from"] else r["method"].upper()
        lines.append(
            f"| ConvNet-D3W{r['width']} | {name} | {r['match_from']} | {r['seconds']:.3g} | {r['ratio']:.3f} |"
        )
    write_text(RESULTS.with_name(RESULTS.name + suffix + ".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "cpu")
