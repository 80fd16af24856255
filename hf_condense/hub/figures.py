"""PNG figures for cards and reports: image grids in pixel space and the accuracy-versus-budget curve."""

from __future__ import annotations

from pathlib import Path

import torch

from ..core.io import atomic_path


def save_grid(pixels: torch.Tensor, labels: torch.Tensor, num_classes: int, path: str | Path) -> None:
    """One row per class of [0, 1] images (N x C x H x W)."""
    from PIL import Image

    rows = [pixels[labels == c] for c in range(num_classes)]
    ncols = max((len(r) for r in rows), default=0)
    if ncols == 0:
        return
    _, c, h, w = pixels.shape
    pad = 1
    canvas = torch.ones(c, num_classes * (h + pad), ncols * (w + pad))
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            canvas[:, i * (h + pad) : i * (h + pad) + h, j * (w + pad) : j * (w + pad) + w] = img
    arr = (canvas * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    img = Image.fromarray(arr[..., 0] if c == 1 else arr)
    scale = max(1, 512 // max(img.size))
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")


def save_accuracy_curve(curves: dict[str, list[tuple[int, float, float]]], path: str | Path, title: str = "") -> None:
    """Test accuracy (mean +- std) against total images per class, one line per named curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    for name, pts in curves.items():
        if not pts:
            continue
        ipc, mean, std = zip(*pts)
        ax.errorbar(ipc, [100 * m for m in mean], yerr=[100 * s for s in std], marker="o", capsize=3, label=name)
    ax.set_xlabel("images per class (cumulative)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
