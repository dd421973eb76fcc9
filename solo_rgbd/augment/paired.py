"""Paired RGB-D augmentation on the tensors' device, batched, with kornia.

Within one view RGB and depth share every geometric transform: they are concatenated into one
(B, 4, H, W) tensor before the random resized crop and flip, so the same crop box and flip are
applied to both and their pixels stay aligned. Colour transforms (jitter, grayscale, blur, as
in MoCo v2) then touch RGB only; depth has its own optional transforms (sensor-like noise,
random holes, blur). Each call draws fresh parameters per sample.

Inputs are the cache's dtypes (uint8 RGB, int16-coded depth, see
:mod:`solo_rgbd.data.cache`); outputs are normalised float tensors.
"""

from __future__ import annotations

import kornia.augmentation as K
import torch
from torch import nn

from solo_rgbd.augment import fast
from solo_rgbd.data.cache import decode_depth
from solo_rgbd.schema import AugmentationConfig, DepthAugmentation, RGBAugmentation

RGB_MEAN = (0.485, 0.456, 0.406)
RGB_STD = (0.229, 0.224, 0.225)
DEPTH_MEAN = 0.5
DEPTH_STD = 0.25


# the one schema of the augmentation settings and their defaults (``augmentations.*``)
AugmentConfig = AugmentationConfig
RGBAugmentConfig = RGBAugmentation
DepthAugmentConfig = DepthAugmentation


def to_unit_float(rgb_u8: torch.Tensor, depth_code: torch.Tensor, dtype=torch.float32):
    """Cache dtypes -> floats in [0, 1]: rgb (B, 3, H, W), depth (B, 1, H, W)."""
    return rgb_u8.to(dtype).div_(255.0), decode_depth(depth_code, dtype)


class Normalize(nn.Module):
    """RGB with ImageNet statistics, depth with (d - 0.5) / 0.25."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(RGB_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(RGB_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, rgb: torch.Tensor, depth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (rgb - self.mean) / self.std, (depth - DEPTH_MEAN) / DEPTH_STD


def _blur_kernel(crop_size: int) -> int:
    k = int(0.1 * crop_size)
    return max(3, k + 1 if k % 2 == 0 else k)


class PairedAugment(nn.Module):
    """Two views per RGB-D pair with shared geometry and RGB-only colour ops."""

    def __init__(self, cfg: AugmentConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or AugmentConfig()
        self.cfg = cfg
        size = (cfg.crop_size, cfg.crop_size)
        self.geometric = nn.Sequential(
            K.RandomResizedCrop(
                size, scale=(cfg.min_scale, cfg.max_scale), cropping_mode="resample"
            ),
            K.RandomHorizontalFlip(p=cfg.hflip_prob),
        )
        c = cfg.rgb
        self.rgb_ops = nn.Sequential(
            K.ColorJitter(c.brightness, c.contrast, c.saturation, c.hue, p=c.color_jitter_prob),
            K.RandomGrayscale(p=c.grayscale_prob),
            K.RandomGaussianBlur(_blur_kernel(cfg.crop_size), tuple(c.blur_sigma), p=c.blur_prob),
        )
        d = cfg.depth
        depth_ops: list[nn.Module] = []
        if d.noise_prob > 0:
            depth_ops.append(K.RandomGaussianNoise(std=d.noise_std, p=d.noise_prob))
        if d.erase_prob > 0:
            depth_ops.append(K.RandomErasing(scale=(0.01, 0.06), value=0.0, p=d.erase_prob))
        if d.blur_prob > 0:
            depth_ops.append(
                K.RandomGaussianBlur(_blur_kernel(cfg.crop_size), (0.1, 2.0), p=d.blur_prob)
            )
        self.depth_ops = nn.Sequential(*depth_ops)
        self.normalize = Normalize()

    @torch.no_grad()
    def view(self, rgb: torch.Tensor, depth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One view of float inputs in [0, 1]: rgb (B, 3, H, W), depth (B, 1, H, W)."""
        if self.cfg.backend == "fast":
            return self._fast_view(rgb, depth)
        x = self.geometric(torch.cat([rgb, depth], dim=1))  # (B, 4, S, S): one box per pair
        rgb, depth = x[:, :3], x[:, 3:]
        rgb = self.rgb_ops(rgb).clamp_(0, 1)
        depth = self.depth_ops(depth).clamp_(0, 1)
        return self.normalize(rgb, depth)

    def _fast_view(self, rgb: torch.Tensor, depth: torch.Tensor) -> tuple[torch.Tensor, ...]:
        cfg, c = self.cfg, self.cfg.rgb
        b, _, h, w = rgb.shape
        boxes = fast.crop_boxes(b, h, w, (cfg.min_scale, cfg.max_scale), rgb.device)
        flip = torch.rand(b, device=rgb.device) < cfg.hflip_prob
        x = fast.crop_flip(torch.cat([rgb, depth], dim=1), cfg.crop_size, boxes, flip)
        rgb, depth = x[:, :3], x[:, 3:]  # (B, 3|1, S, S): one box per pair
        if c.color_jitter_prob > 0:
            rgb = fast.color_jitter(
                rgb, c.brightness, c.contrast, c.saturation, c.hue, c.color_jitter_prob
            )
        if c.grayscale_prob > 0:
            rgb = fast.random_grayscale(rgb, c.grayscale_prob)
        if c.blur_prob > 0:
            kernel = _blur_kernel(cfg.crop_size)
            rgb = fast.random_blur(rgb, kernel, tuple(c.blur_sigma), c.blur_prob)
        depth = self.depth_ops(depth).clamp_(0, 1)
        return self.normalize(rgb.clamp(0, 1), depth)

    @torch.no_grad()
    def forward(
        self, rgb_u8: torch.Tensor, depth_code: torch.Tensor
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The two views of a cached batch: [(rgb, depth), (rgb, depth)] as float tensors."""
        rgb, depth = to_unit_float(rgb_u8, depth_code)
        return [self.view(rgb, depth), self.view(rgb, depth)]


class EvalTransform(nn.Module):
    """Deterministic counterpart for evaluation: resize (optional) and normalise."""

    def __init__(self, size: int | None = None) -> None:
        super().__init__()
        self.size = size
        self.normalize = Normalize()

    @torch.no_grad()
    def forward(self, rgb_u8: torch.Tensor, depth_code: torch.Tensor):
        rgb, depth = to_unit_float(rgb_u8, depth_code)
        if self.size is not None and rgb.shape[-1] != self.size:
            resize = lambda t: nn.functional.interpolate(  # noqa: E731
                t, size=(self.size, self.size), mode="bilinear", align_corners=False
            )
            rgb, depth = resize(rgb), resize(depth)
        return self.normalize(rgb, depth)


def augment_config_from(cfg) -> AugmentConfig:
    """Build an :class:`AugmentConfig` from a (validated) omegaconf node or dict."""
    from omegaconf import OmegaConf

    data = OmegaConf.to_container(cfg, resolve=True) if not isinstance(cfg, dict) else dict(cfg)
    rgb = RGBAugmentConfig(**data.pop("rgb", {}))
    depth = DepthAugmentConfig(**data.pop("depth", {}))
    return AugmentConfig(rgb=rgb, depth=depth, **data)
