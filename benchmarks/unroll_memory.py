"""Plain versus checkpointed MTT unroll: time per iteration, peak memory and gradient agreement, in one run.

Shapes of the REFERENCE.md anchor (public MTT code on this CPU: 13.7 s/iteration, 9.5 GB peak): CIFAR-10 32x32x3,
ConvNet-D3W128, IPC 10 (100 images, all in every step), syn_steps 20, DSA; random data (timing only). Each mode
runs in a fresh process so its peak resident memory (ru_maxrss) is its own.

    python benchmarks/unroll_memory.py            # writes benchmarks/results/unroll_memory.{json,md}
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "unroll_memory"
MODES = [("plain", 1), ("checkpoint", 5), ("checkpoint", 20)]


def measure(segments: int, width: int, ipc: int, steps: int, iters: int) -> dict:
    import timm
    import torch

    import hf_condense  # noqa: F401
    from hf_condense.augment import DSA
    from hf_condense.functional import FlatParams
    from hf_condense.unroll import unroll_backward

    torch.manual_seed(0)
    net = FlatParams(timm.create_model(f"convnet_d3w{width}", num_classes=10, in_chans=3, img_size=32))
    start = net.flatten()
    target = start + 0.01 * torch.randn_like(start)
    images = torch.randn(10 * ipc, 3, 32, 32, requires_grad=True)
    labels = torch.arange(10).repeat_interleave(ipc)
    alpha = torch.tensor(0.01, requires_grad=True)
    dsa, g = DSA(), torch.Generator().manual_seed(0)
    augs = [dsa.sample(len(images), (32, 32), g) for _ in range(steps)]
    times = []
    for _ in range(iters):
        images.grad = alpha.grad = None
        t0 = time.perf_counter()
        loss = unroll_backward(
            net, start, target, alpha, lambda j: (dsa.apply(images, augs[j]), labels), steps, segments
        )
        times.append(time.perf_counter() - t0)
    return {
        "segments": segments,
        "seconds_per_iteration": min(times),
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
        "loss": loss,
        "grad_images": images.grad.flatten()[:4096].tolist(),
        "grad_alpha": float(alpha.grad),
    }


def main() -> None:
    width, ipc, steps, iters = 128, 10, 20, 2
    rows = []
    for name, seg in MODES:
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(seg), str(width), str(ipc), str(steps), str(iters)],
            capture_output=True,
            text=True,
            check=True,
        )
        row = json.loads(out.stdout.strip().splitlines()[-1])
        row["mode"] = name
        rows.append(row)
        print(name, seg, f"{row['seconds_per_iteration']:.2f}s", f"{row['peak_rss_gb']:.2f}GB", flush=True)
    import torch

    ref = torch.tensor(rows[0]["grad_images"])
    for r in rows:
        r["grad_rel_error_vs_plain"] = float((torch.tensor(r.pop("grad_images")) - ref).norm() / ref.norm())
        r["time_ratio_vs_plain"] = r["seconds_per_iteration"] / rows[0]["seconds_per_iteration"]
        r["memory_ratio_vs_plain"] = r["peak_rss_gb"] / rows[0]["peak_rss_gb"]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{RESULTS}.json").write_text(
        json.dumps({"width": width, "ipc": ipc, "syn_steps": steps, "rows": rows}, indent=2) + "\n"
    )
    lines = [
        f"CIFAR-10 shapes, ConvNet-D3W{width}, IPC {ipc} (all images every step), syn_steps {steps}, DSA, 2-core CPU.",
        "",
        "| mode | segments | s / iteration | peak RSS (GB) | time vs plain | memory vs plain | grad rel. error |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['mode']} | {r['segments']} | {r['seconds_per_iteration']:.2f} | {r['peak_rss_gb']:.2f} | "
            f"{r['time_ratio_vs_plain']:.2f} | {r['memory_ratio_vs_plain']:.2f} | "
            f"{r['grad_rel_error_vs_plain']:.1e} |"
        )
    Path(f"{RESULTS}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(measure(*map(int, sys.argv[2:]))))
    else:
        main()
