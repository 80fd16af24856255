"""PNG figures for cards and reports: per-stage image grids (one column per class, titled with its name), all stages
side by side, and the accuracy-versus-budget curve of every evaluated model beside random real images."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.utils import make_grid

from ..core.io import atomic_path

MIN_CELL = 48  # px: small images (8x8 digits, 28x28 Fashion-MNIST) are upsampled to at least this


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def class_columns(pixels: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, int, int]:
    """(grid image C x H x W in [0, 1], rows, cell size): row r, column c holds the r-th image of class c (white
    where a class has fewer); images upsampled (nearest) to at least MIN_CELL px."""
    _, c, h, w = pixels.shape
    scale = max(1, math.ceil(MIN_CELL / min(h, w)))
    cells = F.interpolate(pixels.float(), scale_factor=scale, mode="nearest") if scale > 1 else pixels.float()
    per_class = [cells[labels == k] for k in range(num_classes)]
    rows = max((len(p) for p in per_class), default=0)
    blank = torch.ones(c, h * scale, w * scale)
    ordered = [per_class[k][r] if r < len(per_class[k]) else blank for r in range(rows) for k in range(num_classes)]
    grid = make_grid(torch.stack(ordered).clamp(0, 1), nrow=num_classes, padding=2, pad_value=1.0)
    return grid, rows, h * scale + 2


def _draw(ax, grid: torch.Tensor, class_names: Sequence[str], cell: int, title: str) -> None:
    img = grid.permute(1, 2, 0).numpy()
    ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None, vmin=0, vmax=1)
    ax.set_xticks([2 + cell * (k + 0.5) - 1 for k in range(len(class_names))])
    ax.set_xticklabels(class_names, rotation=45 if max(map(len, class_names)) > 4 else 0, ha="left", fontsize=8)
    ax.xaxis.tick_top()
    ax.set_yticks([])
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    if title:
        ax.set_xlabel(title)


def _save(fig, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    _pyplot().close(fig)


def save_grid(
    pixels: torch.Tensor, labels: torch.Tensor, class_names: Sequence[str], path: str | Path, title: str = ""
) -> None:
    """One stage's images (N x C x H x W in [0, 1]): a column per class titled with its name, a row per image."""
    grid, rows, cell = class_columns(pixels, labels, len(class_names))
    if rows == 0:
        return
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(3.0, grid.shape[2] / 100), grid.shape[1] / 100 + 0.9), dpi=100)
    _draw(ax, grid, class_names, cell, title)
    _save(fig, path)


def save_overview(
    stages: Sequence[tuple[torch.Tensor, torch.Tensor]], class_names: Sequence[str], path: str | Path
) -> None:
    """Every stage's grid side by side (stage k titled below its grid), on one shared scale."""
    grids = [class_columns(p, y, len(class_names)) for p, y in stages]
    if not grids:
        return
    plt = _pyplot()
    width = sum(g.shape[2] for g, _, _ in grids) / 100
    height = max(g.shape[1] for g, _, _ in grids) / 100
    fig, axes = plt.subplots(
        1, len(grids), figsize=(max(3.0, width + 0.3 * len(grids)), height + 1.1), dpi=100, squeeze=False
    )
    for k, (ax, (grid, _, cell)) in enumerate(zip(axes[0], grids), start=1):
        _draw(ax, grid, class_names, cell, f"stage {k}")
    _save(fig, path)


def save_accuracy_curve(curves: dict[str, list[tuple[int, float, float]]], path: str | Path, title: str = "") -> None:
    """Test accuracy (mean +- std) against total images per class, one line per named curve; integer budgets.
    Past 6 curves (a benchmark table's methods) the legend moves beside the axes, past 10 the colours come from
    tab20 (its 10 dark shades, then the light ones), so that no two of 20 curves share one."""
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    many = len(curves) > 6
    tab20 = plt.get_cmap("tab20").colors
    shades = tab20[0::2] + tab20[1::2] if len(curves) > 10 else [None]
    colours = [shades[i % len(shades)] for i in range(len(curves))]
    fig, ax = plt.subplots(figsize=(7.5 if many else 5, 3.5), dpi=120)
    for colour, (name, pts) in zip(colours, curves.items()):
        if not pts:
            continue
        ipc, mean, std = zip(*pts)
        style = "--" if name.startswith("random real") else "-"
        ax.errorbar(
            ipc,
            [100 * m for m in mean],
            yerr=[100 * s for s in std],
            marker="o",
            capsize=3,
            ls=style,
            label=name,
            color=colour,
        )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("images per class (cumulative)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", **({"loc": "center left", "bbox_to_anchor": (1.02, 0.5)} if many else {}))
    fig.tight_layout()
    _save(fig, path)
