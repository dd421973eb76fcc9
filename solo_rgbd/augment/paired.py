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
from solo_rgbd.data.decode import decode_depth
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


def _geometric(size: int, scale: tuple[float, float], hflip_prob: float) -> nn.Sequential:
    return nn.Sequential(
        K.RandomResizedCrop((size, size), scale=scale, cropping_mode="resample"),
        K.RandomHorizontalFlip(p=hflip_prob),
    )


class PairedAugment(nn.Module):
    """Views of each RGB-D pair with shared geometry and RGB-only colour ops: two global
    crops, then ``local_crops`` small ones (multi-crop, as in SwAV and DINO) of ``local_size``
    pixels from ``local_scale`` of the image. The colour and depth ops are the global ones."""

    def __init__(
        self,
        cfg: AugmentConfig | None = None,
        local_crops: int = 0,
        local_size: int = 32,
        local_scale: tuple[float, float] = (0.05, 0.4),
    ) -> None:
        super().__init__()
        cfg = cfg or AugmentConfig()
        self.cfg = cfg
        if local_crops < 0 or local_size < 8 or not 0 < local_scale[0] <= local_scale[1] <= 1:
            raise ValueError(
                f"local crops need local_crops >= 0, local_size >= 8 and 0 < local_scale[0] <= "
                f"local_scale[1] <= 1 (got {local_crops}, {local_size}, {local_scale})"
            )
        self.local_crops, self.local_size = int(local_crops), int(local_size)
        self.local_scale = (float(local_scale[0]), float(local_scale[1]))
        self.geometric = _geometric(cfg.crop_size, (cfg.min_scale, cfg.max_scale), cfg.hflip_prob)
        self.local_geometric = _geometric(self.local_size, self.local_scale, cfg.hflip_prob)
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
    def view(
        self, rgb: torch.Tensor, depth: torch.Tensor, local: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One view of float inputs in [0, 1]: rgb (B, 3, H, W), depth (B, 1, H, W); a global
        crop (``crop_size``), or a local one (``local_size``)."""
        if self.cfg.backend == "fast":
            return self._fast_view(rgb, depth, local)
        geometric = self.local_geometric if local else self.geometric
        x = geometric(torch.cat([rgb, depth], dim=1))  # (B, 4, S, S): one box per pair
        rgb, depth = x[:, :3], x[:, 3:]
        rgb = self.rgb_ops(rgb).clamp_(0, 1)
        depth = self.depth_ops(depth).clamp_(0, 1)
        return self.normalize(rgb, depth)

    def _fast_view(self, rgb: torch.Tensor, depth: torch.Tensor, local: bool) -> tuple:
        cfg, c = self.cfg, self.cfg.rgb
        b, _, h, w = rgb.shape
        size = self.local_size if local else cfg.crop_size
        scale = self.local_scale if local else (cfg.min_scale, cfg.max_scale)
        boxes = fast.crop_boxes(b, h, w, scale, rgb.device)
        flip = torch.rand(b, device=rgb.device) < cfg.hflip_prob
        x = fast.crop_flip(torch.cat([rgb, depth], dim=1), size, boxes, flip)
        rgb, depth = x[:, :3], x[:, 3:]  # (B, 3|1, S, S): one box per pair
        if c.color_jitter_prob > 0:
            rgb = fast.color_jitter(
                rgb, c.brightness, c.contrast, c.saturation, c.hue, c.color_jitter_prob
            )
        if c.grayscale_prob > 0:
            rgb = fast.random_grayscale(rgb, c.grayscale_prob)
        if c.blur_prob > 0:
            kernel = _blur_kernel(size)
            rgb = fast.random_blur(rgb, kernel, tuple(c.blur_sigma), c.blur_prob)
        depth = self.depth_ops(depth).clamp_(0, 1)
        return self.normalize(rgb.clamp(0, 1), depth)

    @torch.no_grad()
    def forward(
        self, rgb_u8: torch.Tensor, depth_code: torch.Tensor
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The views of a cached batch as float tensors: [(rgb, depth)] * (2 + local_crops),
        the two global crops first."""
        rgb, depth = to_unit_float(rgb_u8, depth_code)
        views = [self.view(rgb, depth), self.view(rgb, depth)]
        return views + [self.view(rgb, depth, local=True) for _ in range(self.local_crops)]


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
