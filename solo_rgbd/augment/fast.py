"""Paired views in a few batched kernels (``augmentations.backend=fast``).

The same distributions as the kornia pipeline of :mod:`solo_rgbd.augment.paired`, drawn once
per batch as tensors on the batch's device:

- random resized crop: per sample 10 candidate (area, log-aspect) draws, the first that fits,
  else the whole image (kornia's and torchvision's rule); integer box sizes; the start drawn
  uniformly over the valid positions; one ``affine_grid`` + ``grid_sample`` for the whole
  (B, 4, H, W) RGB-D batch, so RGB and depth share every box pixel for pixel (the box corners map
  to the output corners, as kornia's ``resample`` crop does);
- horizontal flip folded into the same sampling grid (a negated x scale);
- colour jitter (brightness, contrast, saturation in [1 - x, 1 + x], hue in [-h, h] turns, in
  a random order per batch, each step clamped to [0, 1]), grayscale and a per-sample-sigma
  Gaussian blur, each on the samples its Bernoulli draw selected, by ``torch.where`` (no host
  sync). The colour, grayscale and blur steps are kornia's batched functions (the ones its
  ColorJitter and RandomGaussianBlur call) with per-sample factors; this module draws them.

The crop stays one separable ``grid_sample``: kornia's ``crop_and_resize`` gives the same pixels
(within 6e-6) but solves a perspective transform per sample, 3.5x slower on a (64, 4, 72, 72)
batch on 2 CPU cores (20-23 ms against 6.3-6.4 ms per view; ``docs/benchmarks.md``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from kornia.color import rgb_to_grayscale
from kornia.enhance import (
    adjust_brightness_accumulative,
    adjust_contrast_with_mean_subtraction,
    adjust_hue,
    adjust_saturation_with_gray_subtraction,
)
from kornia.filters import gaussian_blur2d


def crop_boxes(
    b: int, h: int, w: int, scale: tuple[float, float], device: torch.device
) -> torch.Tensor:
    """(B, 4) boxes (x0, y0, width, height) in pixels, kornia's RandomResizedCrop rule."""
    ratio = (3.0 / 4.0, 4.0 / 3.0)
    area = (torch.rand(b, 10, device=device) * (scale[1] - scale[0]) + scale[0]) * (h * w)
    log_r = torch.rand(b, 10, device=device) * (math.log(ratio[1]) - math.log(ratio[0]))
    aspect = torch.exp(log_r + math.log(ratio[0]))
    cw = torch.sqrt(area * aspect).round()
    ch = torch.sqrt(area / aspect).round()
    fits = (cw > 0) & (cw <= w) & (ch > 0) & (ch <= h)
    first = ((fits.cumsum(1) == 1) & fits).int().argmax(1)  # the first candidate that fits
    any_fit = fits.any(1)
    rows = torch.arange(b, device=device)
    bw = torch.where(any_fit, cw[rows, first], torch.full_like(cw[:, 0], w)).clamp(1, w)
    bh = torch.where(any_fit, ch[rows, first], torch.full_like(ch[:, 0], h)).clamp(1, h)
    x0 = (torch.rand(b, device=device) * (w - bw + 1)).floor()
    y0 = (torch.rand(b, device=device) * (h - bh + 1)).floor()
    return torch.stack([x0, y0, bw, bh], dim=1)


def crop_flip(x: torch.Tensor, size: int, boxes: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Resample each box of ``x`` (B, C, H, W) to (B, C, size, size), mirrored where ``flip``."""
    b, _, h, w = x.shape
    x0, y0, bw, bh = boxes.unbind(1)
    sx = (bw - 1) / max(w - 1, 1)
    sy = (bh - 1) / max(h - 1, 1)
    tx = (2 * x0 + bw - 1) / max(w - 1, 1) - 1
    ty = (2 * y0 + bh - 1) / max(h - 1, 1) - 1
    # an axis-aligned box: the grid is separable, x from the column and y from the row
    v = torch.linspace(-1, 1, size, device=x.device, dtype=x.dtype)  # output coords
    gx = torch.where(flip, -sx, sx).to(x.dtype)[:, None] * v + tx.to(x.dtype)[:, None]  # (B, S)
    gy = sy.to(x.dtype)[:, None] * v + ty.to(x.dtype)[:, None]
    grid = torch.stack(
        [gx[:, None, :].expand(b, size, size), gy[:, :, None].expand(b, size, size)], dim=-1
    )  # (B, S, S, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)


def _per_sample(v: torch.Tensor) -> torch.Tensor:
    return v.view(-1, 1, 1, 1)


def color_jitter(
    x: torch.Tensor, brightness: float, contrast: float, saturation: float, hue: float, p: float
) -> torch.Tensor:
    """kornia's ColorJitter distribution on the samples drawn with probability ``p``."""
    b = x.shape[0]
    apply = torch.rand(b, device=x.device) < p
    factors = [
        1 + (torch.rand(b, device=x.device) * 2 - 1) * brightness,
        1 + (torch.rand(b, device=x.device) * 2 - 1) * contrast,
        1 + (torch.rand(b, device=x.device) * 2 - 1) * saturation,
        (torch.rand(b, device=x.device) * 2 - 1) * hue,
    ]
    out = x
    for step in torch.randperm(4).tolist():  # a random order per batch (CPU draw, no sync)
        f = factors[step]
        if step == 0 and brightness > 0:  # x * f
            out = adjust_brightness_accumulative(out, f)
        elif step == 1 and contrast > 0:  # (x - mean gray) * f + mean gray
            out = adjust_contrast_with_mean_subtraction(out, f)
        elif step == 2 and saturation > 0:  # (x - gray) * f + gray
            out = adjust_saturation_with_gray_subtraction(out, f)
        elif step == 3 and hue > 0:
            out = adjust_hue(out, f * 2 * math.pi).clamp(0, 1)
    return torch.where(_per_sample(apply), out, x)


def random_grayscale(x: torch.Tensor, p: float) -> torch.Tensor:
    pick = torch.rand(x.shape[0], device=x.device) < p
    return torch.where(_per_sample(pick), rgb_to_grayscale(x).expand_as(x), x)


def random_blur(x: torch.Tensor, kernel: int, sigma: tuple[float, float], p: float) -> torch.Tensor:
    """Gaussian blur with a per-sample sigma (kornia's, reflect borders)."""
    pick = torch.rand(x.shape[0], device=x.device) < p
    s = torch.rand(x.shape[0], device=x.device) * (sigma[1] - sigma[0]) + sigma[0]
    y = gaussian_blur2d(x, (kernel, kernel), torch.stack([s, s], dim=1).to(x.dtype))
    return torch.where(_per_sample(pick), y, x)
