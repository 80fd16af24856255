"""IDC's multi-formation (Kim et al., ICML 2022): one stored image holds factor x factor smaller images.

`decode` cuts each stored image into a factor x factor grid of tiles and upsamples every tile (bilinear) back to the
full size, so N stored images train a network as N x factor^2 images; `encode` tiles real images, each downsampled,
into stored images (IDC's "mix" initialisation). Stages record their factor in `stage.json` as `formation_factor`,
and everything that trains on a stage decodes it first.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def formation_factor_of(meta: dict) -> int:
    """A stage's multi-formation factor from its metadata (1: stored as trained)."""
    return int(meta.get("formation_factor", 1))


def decode(images: torch.Tensor, labels: torch.Tensor, factor: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, C, H, W) stored images -> (N x factor^2, C, H, W) decoded images, tile by tile; labels (ids or soft)
    repeat to match. Sizes that factor does not divide are zero-padded at the bottom and right first."""
    if factor <= 1:
        return images, labels
    h, w = images.shape[-2:]
    th, tw = math.ceil(h / factor), math.ceil(w / factor)
    padded = F.pad(images, (0, tw * factor - w, 0, th * factor - h))
    tiles = [padded[..., i * th : (i + 1) * th, j * tw : (j + 1) * tw] for i in range(factor) for j in range(factor)]
    decoded = F.interpolate(torch.cat(tiles), size=(h, w), mode="bilinear", align_corners=False)
    return decoded, torch.cat([labels] * factor**2)


def encode(real: torch.Tensor, factor: int) -> torch.Tensor:
    """(N x factor^2, C, H, W) real images -> (N, C, H, W) stored images: tile k = i x factor + j of stored image n
    holds real image k x N + n, downsampled, so `decode(encode(x))` gives back blurred copies of x in order."""
    if factor <= 1:
        return real
    n = len(real) // factor**2
    h, w = real.shape[-2:]
    th, tw = math.ceil(h / factor), math.ceil(w / factor)
    out = real.new_zeros((n, real.shape[1], th * factor, tw * factor))
    for k in range(factor**2):
        i, j = divmod(k, factor)
        small = F.interpolate(real[k * n : (k + 1) * n], size=(th, tw), mode="bilinear", antialias=True)
        out[..., i * th : (i + 1) * th, j * tw : (j + 1) * tw] = small
    return out[..., :h, :w]
