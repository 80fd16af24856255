"""The map from uint8 pixels to model inputs (mean/std or ZCA), and back to pixels for viewing.

Distilled images live in this input space, so the fitted state is saved beside every output as safetensors: anyone
can map test images into the same space, or view the images in pixel space.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import kornia
import numpy as np
import torch
from safetensors.torch import load_file

from ..core.config import opt
from ..core.io import load_verified, save_safetensors, save_verified


@dataclass
class PreprocessConfig:
    """How raw pixels become model inputs; distilled images live in this space."""

    normalize: bool = opt(True, help="Per-channel mean/std normalisation (ignored when zca is on, as in MTT).")
    zca: bool = opt(False, help="ZCA whitening fitted on the train split in [0, 1] (its form: zca_form).")
    zca_eps: float = opt(0.1, gt=0, help="ZCA regulariser (MTT uses 0.1).")
    zca_form: Literal["kornia", "kip"] = opt(
        "kornia",
        help="kornia: MTT's ZCA (kornia's ZCAWhitening, eps added to the eigenvalues). kip: the KIP / RaT-BPTT form: "
        "each image centred and scaled to unit norm first, the regulariser zca_eps x the mean eigenvalue.",
    )

    def key(self) -> dict:
        """The settings that shape the input space, for cache keys and stage hashes (the default zca_form left out,
        so that keys made before it existed still match)."""
        d = dict(self.__dict__)
        if d["zca_form"] == "kornia":
            d.pop("zca_form")
        return d


def per_image_unit(flat: torch.Tensor) -> torch.Tensor:
    """Each row centred on its own mean and scaled to unit norm (KIP's ZCA input)."""
    flat = flat - flat.mean(dim=1, keepdim=True)
    return flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-12)


def kip_zca(x: torch.Tensor, regularization: float) -> dict[str, torch.Tensor]:
    """KIP's (and RaT-BPTT's) ZCA of N x D rows: whitening and its inverse from the eigendecomposition of the per-image
    normalised rows' covariance, each eigenvalue regularised by `regularization` x their mean."""
    rows = per_image_unit(x.double())
    eigenvalues, vectors = torch.linalg.eigh(rows.T @ rows / len(rows))
    scale = torch.sqrt(eigenvalues.clamp_min(0) + regularization * eigenvalues.clamp_min(0).mean())
    return {
        "mean_vector": torch.zeros(x.shape[1]),
        "transform_matrix": ((vectors / scale) @ vectors.T).float(),
        "transform_inv": ((vectors * scale) @ vectors.T).float(),
    }


def as_image_tensor(images, channels: int) -> torch.Tensor:
    """An N x C x H x W tensor from a tensor (as is), a numpy array (N x C x H x W, N x H x W x C, or N x H x W for
    one channel) or PIL images (one or a sequence, converted to the run's L or RGB mode)."""
    if isinstance(images, torch.Tensor):
        return images
    from PIL import Image

    if isinstance(images, Image.Image):
        images = [images]
    if isinstance(images, list | tuple) and images and isinstance(images[0], Image.Image):
        images = np.stack([np.asarray(im.convert("L" if channels == 1 else "RGB")) for im in images])
    arr = np.asarray(images)
    if arr.ndim == 3 and channels == 1:
        arr = arr[:, None]
    elif arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4:
        raise ValueError(f"images: expected N x C x H x W (or N x H x W x C), got shape {arr.shape}")
    if arr.shape[1] != channels and arr.shape[-1] == channels:
        arr = arr.transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(arr))


class Preprocessor:
    """Normalisation or ZCA fitted on the train split; `forward` maps uint8 images to model inputs."""

    def __init__(self, mode: str, mean: torch.Tensor, std: torch.Tensor, zca: dict[str, torch.Tensor] | None = None):
        self.mode = mode  # "none", "normalize", "zca" or "zca_kip" (per-image centred, unit-norm rows, then ZCA)
        self.mean, self.std = mean, std
        self.zca = zca

    @classmethod
    def fit(cls, cfg: PreprocessConfig, train_x: torch.Tensor) -> Preprocessor:
        x = train_x.float() / 255.0
        mean = x.mean(dim=(0, 2, 3))
        std = x.std(dim=(0, 2, 3)).clamp_min(1e-6)
        if cfg.zca and cfg.zca_form == "kip":
            return cls("zca_kip", mean, std, kip_zca(x.flatten(1), cfg.zca_eps))
        if cfg.zca:
            zca = kornia.enhance.ZCAWhitening(eps=cfg.zca_eps, compute_inv=True).fit(x.double())
            state = {
                "mean_vector": zca.mean_vector.float(),
                "transform_matrix": zca.transform_matrix.float(),
                "transform_inv": zca.transform_inv.float(),
            }
            return cls("zca", mean, std, state)
        return cls("normalize" if cfg.normalize else "none", mean, std)

    def __call__(self, images, batch: int = 8192) -> torch.Tensor:
        """uint8 (or [0, 1] float) N x C x H x W -> model input space, float32. Also takes numpy arrays (N x C x H x
        W, or N x H x W x C / N x H x W as `datasets` and PIL give them) and PIL images (one, or a list)."""
        images = as_image_tensor(images, self.channels)
        self.check_shape(tuple(images.shape[1:]))
        out = torch.empty(images.shape, dtype=torch.float32)
        for i in range(0, len(images), batch):
            x = images[i : i + batch]
            x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
            out[i : i + batch] = self._forward(x)
        return out

    @property
    def channels(self) -> int:
        return len(self.mean)

    def check_shape(self, shape: tuple[int, ...]) -> None:
        """Refuse images these statistics were not fitted on: other channels, or another size under ZCA (its
        transform is fitted per pixel)."""
        fitted = self.zca["mean_vector"].numel() if self.zca is not None else None
        if shape[0] != self.channels or (fitted is not None and math.prod(shape) != fitted):
            size = f"{fitted // self.channels} pixels per channel" if fitted else "any size"
            raise ValueError(
                f"images of shape {shape} (channels, height, width) given; this preprocessing was fitted on "
                f"{self.channels}-channel images of {size}"
            )

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.zca is not None:
            flat = per_image_unit(x.flatten(1)) if self.mode == "zca_kip" else x.flatten(1)
            z = (flat - self.zca["mean_vector"]) @ self.zca["transform_matrix"]
            return z.view_as(x)
        if self.mode == "normalize":
            return (x - self.mean[:, None, None]) / self.std[:, None, None]
        return x

    def to_pixels(self, x: torch.Tensor) -> torch.Tensor:
        """Model inputs -> [0, 1] pixels (inverse ZCA or de-normalisation), clamped for viewing. KIP's ZCA dropped
        each image's mean and norm, so its inverse is stretched to [0, 1] per image."""
        x = x.detach().float().cpu()
        if self.zca is not None:
            flat = x.flatten(1) @ self.zca["transform_inv"].T + self.zca["mean_vector"]
            if self.mode == "zca_kip":
                low, high = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
                flat = (flat - low) / (high - low).clamp_min(1e-12)
            x = flat.view_as(x)
        elif self.mode == "normalize":
            x = x * self.std[:, None, None] + self.mean[:, None, None]
        return x.clamp(0, 1)

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = {"mean": self.mean, "std": self.std}
        if self.zca:
            state.update({f"zca.{k}": v for k, v in self.zca.items()})
        return state

    def save(self, path: str | Path) -> None:
        save_safetensors(self.state_dict(), path, metadata={"mode": self.mode, "format": "hf_condense.preprocess.v1"})

    @classmethod
    def load(cls, path: str | Path) -> Preprocessor:
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        return cls.from_state(meta.get("mode", "normalize"), load_file(str(path)))

    @classmethod
    def from_state(cls, mode: str, state: dict[str, torch.Tensor]) -> Preprocessor:
        zca = {k.split(".", 1)[1]: v for k, v in state.items() if k.startswith("zca.")} or None
        return cls(mode, state["mean"], state["std"], zca)

    @classmethod
    def fit_cached(cls, cfg: PreprocessConfig, train_x: torch.Tensor, key: str, cache_dir: Path) -> Preprocessor:
        """`fit`, except that a ZCA fit (an SVD of (C H W)^2) is kept in `cache_dir/zca` under `key` and reused."""
        if not cfg.zca:
            return cls.fit(cfg, train_x)
        path = Path(cache_dir) / "zca" / f"{key}.safetensors"
        loaded = load_verified(path, key, "ZCA")
        if loaded is not None:
            return cls.from_state("zca_kip" if cfg.zca_form == "kip" else "zca", loaded[0])
        pre = cls.fit(cfg, train_x)
        save_verified(pre.state_dict(), path, key)
        return pre

    def describe(self) -> str:
        return {
            "zca": "ZCA-whitened pixels in [0, 1] (inverse: preprocessing.safetensors)",
            "zca_kip": "KIP-style ZCA: each image centred and unit-norm, then whitened (preprocessing.safetensors)",
            "normalize": "per-channel normalised pixels ((x/255 - mean) / std)",
            "none": "pixels scaled to [0, 1]",
        }[self.mode]
