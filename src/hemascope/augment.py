"""Batched training augmentation for single cells, on tensors (no per-image Python).

One random affine per image does the geometric part in a single ``grid_sample``: random
resized crop (area ``scale``, aspect ``ratio``, as in the bone-marrow study), random zoom
in or out, rotation up to ``rotation`` degrees and horizontal / vertical flips; borders are
reflected so the background stays plausible. Then colour jitter (brightness, contrast,
saturation, hue) and resolution degradation (downsample then upsample, the cross-lab
study's trick to make sharp source images look like other scanners). Optional stain
density jitter (per-channel scale and offset of the optical density, Beer-Lambert) and
Gaussian defocus blur; ``AugmentConfig.cross_lab()`` turns everything up for models meant to
run on other labs' cells. Train-only: inference never calls this.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation switches and ranges (all probabilities per image).

    The defaults suit centred single cells; ``AugmentConfig.bone_marrow_study()`` gives the
    bone-marrow protocol (crop scale 0.08-1).
    """

    scale: tuple[float, float] = (0.5, 1.0)
    ratio: tuple[float, float] = (0.75, 1.333)
    zoom: tuple[float, float] = (0.85, 1.15)
    rotation: float = 180.0
    hflip: bool = True
    vflip: bool = True
    brightness: float = 0.15
    contrast: float = 0.15
    saturation: float = 0.15
    hue: float = 0.03
    degrade_p: float = 0.25
    degrade_factor: tuple[float, float] = (0.35, 0.85)
    stain: float = 0.0  # std of the log of a per-channel optical-density scale (0: off)
    stain_shift: float = 0.0  # std of a per-channel optical-density offset
    blur_p: float = 0.0  # share of images blurred (defocus)
    blur_sigma: tuple[float, float] = (0.5, 1.5)  # Gaussian sigma in pixels, one per batch
    enabled: bool = True

    @classmethod
    def bone_marrow_study(cls) -> "AugmentConfig":
        """Glüge et al. 2023: crop 0.08-1, aspect 0.75-1.33, rotation 0-180, flips; no colour."""
        return cls(scale=(0.08, 1.0), zoom=(1.0, 1.0), brightness=0, contrast=0, saturation=0,
                   hue=0, degrade_p=0)

    @classmethod
    def cross_lab(cls) -> "AugmentConfig":
        """For models meant to run on other labs' cells: stain density changes in optical
        density space, stronger colour jitter, magnification changes, blur and lower
        resolution (the cross-lab study's degradation, used more often)."""
        return cls(scale=(0.4, 1.0), zoom=(0.75, 1.3), brightness=0.25, contrast=0.25,
                   saturation=0.25, hue=0.04, degrade_p=0.5, degrade_factor=(0.25, 0.8),
                   stain=0.2, stain_shift=0.05, blur_p=0.3)

    @classmethod
    def none(cls) -> "AugmentConfig":
        return cls(enabled=False)

    def to_dict(self) -> dict:
        return asdict(self)


def augment_batch(x: torch.Tensor, cfg: AugmentConfig, *, generator: torch.Generator | None = None
                  ) -> torch.Tensor:
    """Augment a float batch ``(B, 3 + K, H, W)`` in ``[0, 1]``; returns a new tensor, same shape.

    Channels after the first three (e.g. part masks) follow the geometry but not the colour
    or resolution changes.
    """
    if not cfg.enabled:
        return x
    b = x.shape[0]
    g = generator  # random draws stay on the CPU generator (same numbers on any device)
    dev = x.device

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(b, generator=g)

    def per_image(v: torch.Tensor) -> torch.Tensor:
        return v.to(dev).view(b, 1, 1, 1)

    # geometry: random resized crop box (normalised side lengths) + zoom + rotation + flips
    area = uniform(*cfg.scale)
    log_r = uniform(math.log(cfg.ratio[0]), math.log(cfg.ratio[1]))
    aspect = torch.exp(log_r)
    sw = torch.sqrt(area * aspect).clamp(max=1.0)
    sh = torch.sqrt(area / aspect).clamp(max=1.0)
    zoom = uniform(*cfg.zoom)
    sw, sh = sw / zoom, sh / zoom
    tx = (torch.rand(b, generator=g) * 2 - 1) * (1 - sw).clamp(min=0)
    ty = (torch.rand(b, generator=g) * 2 - 1) * (1 - sh).clamp(min=0)
    angle = uniform(-cfg.rotation, cfg.rotation) * math.pi / 180
    fx = torch.where(torch.rand(b, generator=g) < 0.5, -1.0, 1.0) if cfg.hflip else torch.ones(b)
    fy = torch.where(torch.rand(b, generator=g) < 0.5, -1.0, 1.0) if cfg.vflip else torch.ones(b)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = cos * sw * fx
    theta[:, 0, 1] = -sin * sh * fy
    theta[:, 1, 0] = sin * sw * fx
    theta[:, 1, 1] = cos * sh * fy
    theta[:, 0, 2] = tx
    theta[:, 1, 2] = ty
    grid = F.affine_grid(theta.to(device=dev, dtype=x.dtype), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    out, extra = out[:, :3], out[:, 3:]

    # colour
    if cfg.brightness:
        out = out * per_image(uniform(1 - cfg.brightness, 1 + cfg.brightness))
    if cfg.contrast:
        mean = out.mean(dim=(1, 2, 3), keepdim=True)
        out = (out - mean) * per_image(uniform(1 - cfg.contrast, 1 + cfg.contrast)) + mean
    if cfg.saturation:
        gray = (0.299 * out[:, 0:1] + 0.587 * out[:, 1:2] + 0.114 * out[:, 2:3])
        out = (out - gray) * per_image(uniform(1 - cfg.saturation, 1 + cfg.saturation)) + gray
    if cfg.hue:
        out = _rotate_hue(out, uniform(-cfg.hue, cfg.hue) * 2 * math.pi)
    if cfg.stain or cfg.stain_shift:  # stain density: Beer-Lambert, per colour channel
        scale = torch.exp(torch.randn(b, 3, generator=g) * cfg.stain).to(dev).view(b, 3, 1, 1)
        shift = (torch.randn(b, 3, generator=g) * cfg.stain_shift).to(dev).view(b, 3, 1, 1)
        od = -torch.log(out.clamp(min=1 / 255))
        out = torch.exp(-(od * scale + shift).clamp(min=0))
    out = out.clamp(0, 1)

    def on_subset(p: float, fn) -> None:
        """Apply ``fn`` to a random share ``p`` of the batch, chosen on the CPU and sent as
        indices (no device sync); ``fn`` draws its one parameter for the whole subset."""
        pick = torch.rand(b, generator=g) < p
        if pick.any():
            idx = pick.nonzero().squeeze(1).to(dev)
            out[idx] = fn(out[idx])

    h, w = x.shape[-2:]

    def degrade(t: torch.Tensor) -> torch.Tensor:
        f = float(uniform(*cfg.degrade_factor)[0])  # one factor per batch keeps it batched
        small = F.interpolate(t, size=(max(4, int(h * f)), max(4, int(w * f))), mode="area")
        return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)

    if cfg.blur_p > 0:  # defocus, one sigma per batch
        on_subset(cfg.blur_p, lambda t: _gaussian_blur(t, float(uniform(*cfg.blur_sigma)[0])))
    if cfg.degrade_p > 0:  # resolution degradation
        on_subset(cfg.degrade_p, degrade)
    return torch.cat([out, extra], 1) if extra.shape[1] else out


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, C, H, W)`` with reflected borders."""
    r = max(1, int(math.ceil(2.5 * sigma)))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-(t / sigma) ** 2 / 2)
    k = k / k.sum()
    c = x.shape[1]
    x = F.pad(x, (r, r, r, r), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _rotate_hue(x: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotate chroma in YIQ space by ``angle`` radians per image."""
    to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322],
                           [0.211, -0.523, 0.312]], dtype=x.dtype)
    to_rgb = torch.linalg.inv(to_yiq)
    c, s = torch.cos(angle), torch.sin(angle)
    rot = torch.zeros(x.shape[0], 3, 3, dtype=x.dtype)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = c, -s, s, c
    m = to_rgb @ rot @ to_yiq  # (B, 3, 3)
    return torch.einsum("bij,bjhw->bihw", m.to(x.device), x)
