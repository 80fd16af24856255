"""Differentiable Siamese Augmentation (DSA, Zhao & Bilen, ICML 2021).

One family is drawn per call (the reference's "S" mode); parameters are per sample. Siamese use samples one set of
parameters and applies it to several batches of any size (e.g. a real and a synthetic class batch). Written by hand
rather than with kornia because kornia's colour ops clamp to [0, 1], which is wrong (and kills gradients) on
normalised or ZCA inputs. Parameters are sampled on the CPU generator so a run is reproducible on any device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..core.config import opt

FAMILIES = ("color", "crop", "cutout", "flip", "scale", "rotate")
CROP_RATIO, CUTOUT_RATIO, SCALE_RATIO, ROTATE_DEG = 0.125, 0.5, 1.2, 15.0


@dataclass
class AugmentConfig:
    """Differentiable siamese augmentation (DSA, Zhao & Bilen 2021)."""

    strategy: str = opt(
        "color_crop_cutout_flip_scale_rotate",
        help="Families joined by '_'; one is drawn per call. Drop 'flip' for digits.",
    )


def parse_strategy(strategy: str) -> tuple[str, ...]:
    """'color_crop_...' -> ('color', 'crop', ...); raises ValueError naming an unknown family."""
    fams = tuple(s for s in strategy.split("_") if s) if strategy not in ("", "none") else ()
    bad = [f for f in fams if f not in FAMILIES]
    if bad:
        raise ValueError(
            f"unknown augmentation famil{'ies' if len(bad) > 1 else 'y'} {bad}; "
            f"allowed: {', '.join(FAMILIES)} joined by '_' (or 'none')"
        )
    return fams


@dataclass
class AugParams:
    """One draw: a family and its per-sample parameters (leading dim n, or 1 to broadcast)."""

    family: str
    values: dict[str, torch.Tensor]

    def to(self, device: torch.device | str) -> AugParams:
        """The parameters on `device`, copied without waiting for queued GPU work (a blocking copy per tensor
        would drain the queue at every unrolled step)."""
        return AugParams(self.family, {k: t.to(device, non_blocking=True) for k, t in self.values.items()})


def _rand(n: int, g: torch.Generator | None) -> torch.Tensor:
    return torch.rand(n, generator=g)


class DSA:
    """Samples and applies DSA; `DSA('none')` is the identity."""

    def __init__(self, strategy: str = "color_crop_cutout_flip_scale_rotate"):
        self.families = parse_strategy(strategy)

    @property
    def enabled(self) -> bool:
        return bool(self.families)

    def sample(self, n: int, size: tuple[int, int], generator: torch.Generator | None = None) -> AugParams | None:
        """Draw a family and `n` per-sample parameter sets for images of spatial `size` (H, W)."""
        if not self.families:
            return None
        fam = self.families[int(torch.randint(len(self.families), (1,), generator=generator))]
        h, w = size
        if fam == "color":
            vals = {
                "brightness": _rand(n, generator) - 0.5,
                "saturation": _rand(n, generator) * 2.0,
                "contrast": _rand(n, generator) + 0.5,
            }
        elif fam == "crop":
            sh, sw = int(h * CROP_RATIO + 0.5), int(w * CROP_RATIO + 0.5)
            vals = {
                "dy": torch.randint(-sh, sh + 1, (n,), generator=generator),
                "dx": torch.randint(-sw, sw + 1, (n,), generator=generator),
            }
        elif fam == "cutout":
            ch, cw = int(h * CUTOUT_RATIO + 0.5), int(w * CUTOUT_RATIO + 0.5)
            vals = {
                "cy": torch.randint(0, h + (1 - ch % 2), (n,), generator=generator),
                "cx": torch.randint(0, w + (1 - cw % 2), (n,), generator=generator),
            }
        elif fam == "flip":
            vals = {"flip": _rand(n, generator) < 0.5}
        elif fam == "scale":
            lo = 1.0 / SCALE_RATIO
            vals = {
                "sx": _rand(n, generator) * (SCALE_RATIO - lo) + lo,
                "sy": _rand(n, generator) * (SCALE_RATIO - lo) + lo,
            }
        else:  # rotate
            vals = {"theta": (_rand(n, generator) - 0.5) * 2 * ROTATE_DEG / 180 * math.pi}
        return AugParams(fam, vals)

    def apply(self, x: torch.Tensor, p: AugParams | None) -> torch.Tensor:
        """Apply parameters `p` to x (N x C x H x W); parameters of size 1 broadcast to the batch."""
        if p is None:
            return x
        v = {k: t.expand(len(x)) if len(t) == 1 else t for k, t in p.to(x.device).values.items()}
        return getattr(self, f"_{p.family}")(x, **v)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Per-sample (non-siamese) augmentation of one batch."""
        return self.apply(x, self.sample(len(x), x.shape[-2:], generator))

    def siamese(self, *batches: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
        """The same draw applied to every batch (sizes may differ)."""
        p = self.sample(1, batches[0].shape[-2:], generator)
        return tuple(self.apply(b, p) for b in batches)

    # The families. Colour ops follow the reference ranges and never clamp.
    @staticmethod
    def _color(x, brightness, saturation, contrast):
        x = x + brightness[:, None, None, None]
        m = x.mean(dim=1, keepdim=True)
        x = (x - m) * saturation[:, None, None, None] + m
        m = x.mean(dim=(1, 2, 3), keepdim=True)
        return (x - m) * contrast[:, None, None, None] + m

    @staticmethod
    def _crop(x, dy, dx):
        # Integer translation with zero fill, as an exact gather from a zero-padded copy.
        n, c, h, w = x.shape
        sh, sw = int(h * CROP_RATIO + 0.5), int(w * CROP_RATIO + 0.5)
        xp = F.pad(x, (sw, sw, sh, sh))
        rows = torch.arange(h, device=x.device)[None] + sh - dy[:, None]
        cols = torch.arange(w, device=x.device)[None] + sw - dx[:, None]
        bi = torch.arange(n, device=x.device)[:, None, None, None]
        ci = torch.arange(c, device=x.device)[None, :, None, None]
        return xp[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]

    @staticmethod
    def _cutout(x, cy, cx):
        n, _, h, w = x.shape
        ch, cw = int(h * CUTOUT_RATIO + 0.5), int(w * CUTOUT_RATIO + 0.5)
        r = torch.arange(h, device=x.device)[None] - (cy[:, None] - ch // 2)
        c = torch.arange(w, device=x.device)[None] - (cx[:, None] - cw // 2)
        inside = ((r >= 0) & (r < ch))[:, :, None] & ((c >= 0) & (c < cw))[:, None, :]
        return x * (~inside).to(x.dtype)[:, None]

    @staticmethod
    def _flip(x, flip):
        return torch.where(flip[:, None, None, None], x.flip(3), x)

    @staticmethod
    def _affine(x, theta):
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=True)
        return F.grid_sample(x, grid, align_corners=True)

    @classmethod
    def _scale(cls, x, sx, sy):
        z = torch.zeros_like(sx)
        theta = torch.stack([torch.stack([sx, z, z], 1), torch.stack([z, sy, z], 1)], 1)
        return cls._affine(x, theta)

    @classmethod
    def _rotate(cls, x, theta):
        cos, sin, z = torch.cos(theta), torch.sin(theta), torch.zeros_like(theta)
        mat = torch.stack([torch.stack([cos, sin, z], 1), torch.stack([-sin, cos, z], 1)], 1)
        return cls._affine(x, mat)


def cutmix(x: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, float]:
    """CutMix (Yun et al. 2019, Beta(1, 1), as IDC trains): a box of a shuffled copy of the batch pasted into it.
    Returns the mixed batch, the shuffle (whose labels the box carries) and the share of each image left unmixed."""
    h, w = x.shape[-2:]
    lam = float(torch.rand(1, generator=g))
    ch, cw = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
    cy, cx = int(torch.randint(h, (1,), generator=g)), int(torch.randint(w, (1,), generator=g))
    y0, y1, x0, x1 = max(cy - ch // 2, 0), min(cy + ch // 2, h), max(cx - cw // 2, 0), min(cx + cw // 2, w)
    perm = torch.randperm(len(x), generator=g).to(x.device)
    x = x.clone()
    x[..., y0:y1, x0:x1] = x[perm][..., y0:y1, x0:x1]
    return x, perm, 1 - (y1 - y0) * (x1 - x0) / (h * w)
