"""The fusion encoder of MBCF's InterCLM (Eq. 5, 6, 9) and its attentive mask.

    F_fused = Conv(F_r (x) mask(a_r)  (+)  F_d (x) a_d)                  (Eq. 9)

with a_r, a_d channel attention scores (global average pooling -> MLP -> sigmoid), mask()
zeroing the RGB channels with the top ``mask_ratio`` share of scores per sample, (x) a
channel-wise product and (+) channel concatenation; then pooling and a projector.

Choices where the paper is open (all are config options in ``method_kwargs.fusion``):

- ``pool='after'``: the conv runs on the feature maps and global average pooling follows it.
  The paper's Fig. 3 text names pooling first; we read that pooling as the squeeze of the
  channel attention. ``pool='before'`` pools first (the conv is then a linear layer on
  vectors) and is cheaper still.
- ``conv_kernel=1`` (1x1 conv + BN + ReLU, ``dim`` output channels): a 3x3 conv on
  2 x 2048 channels would cost about as much as a ResNet-50 forward and break the goal that the
  fusion branch costs little; 3 is available.
- The projector is MoCo v2's (dim -> proj_hidden_dim -> proj_output_dim), as for the encoders.
- The RGB maps are weighted by ``a_r * mask`` (the masked attention scores), like the depth
  maps are weighted by ``a_d``: that is Eq. 9 with mask(f_r') the masked, sorted attention.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from solo_rgbd.nn.heads import mocov2_projector


def topk_channel_mask(scores: torch.Tensor, ratio: float) -> torch.Tensor:
    """A {0, 1} mask of ``scores``' shape (B, C) that zeroes ``floor(ratio * C)`` channels per row.

    The zeroed channels are those with the highest scores. Ties are broken by channel index:
    among equal scores the lower index is masked first (a stable descending sort), so the
    count is always exact and the result deterministic. ``ratio=0`` masks nothing.
    """
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"mask ratio must be in [0, 1], got {ratio}.")
    if scores.ndim != 2:
        raise ValueError(f"scores must be (B, C), got shape {tuple(scores.shape)}.")
    channels = scores.shape[1]
    k = math.floor(ratio * channels + 1e-9)
    mask = torch.ones_like(scores)
    if k == 0:
        return mask
    order = torch.sort(scores.detach(), dim=1, descending=True, stable=True).indices
    return mask.scatter_(1, order[:, :k], 0.0)


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation scores: GAP -> Linear(C, C/r) -> ReLU -> Linear -> sigmoid."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.mlp = nn.Sequential(
            nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels)
        )

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.mlp(fmap.mean(dim=(2, 3))))  # (B, C)


class FusionEncoder(nn.Module):
    """f_F of Eq. 5/6: (F_rgb, F_depth) feature maps -> fused embedding (B, proj_output_dim)."""

    def __init__(
        self,
        rgb_channels: int,
        depth_channels: int,
        dim: int = 2048,
        proj_hidden_dim: int = 2048,
        proj_output_dim: int = 128,
        mask_ratio: float = 0.5,
        conv_kernel: int = 1,
        attention_reduction: int = 16,
        pool: str = "after",
    ) -> None:
        super().__init__()
        if pool not in ("after", "before"):
            raise ValueError(f"fusion pool must be 'after' or 'before', got {pool!r}.")
        if conv_kernel not in (1, 3):
            raise ValueError(f"fusion conv_kernel must be 1 or 3, got {conv_kernel}.")
        self.mask_ratio = mask_ratio
        self.pool = pool
        self.att_rgb = ChannelAttention(rgb_channels, attention_reduction)
        self.att_depth = ChannelAttention(depth_channels, attention_reduction)
        kernel = conv_kernel if pool == "after" else 1
        self.conv = nn.Sequential(
            nn.Conv2d(rgb_channels + depth_channels, dim, kernel, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(dim),
            nn.ReLU(inplace=True),
        )
        self.projector = mocov2_projector(dim, proj_hidden_dim, proj_output_dim)

    def forward(
        self, f_rgb: torch.Tensor, f_depth: torch.Tensor, apply_mask: bool = True
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """f_rgb (B, Cr, h, w), f_depth (B, Cd, h, w) -> z (B, D) and attention details."""
        a_rgb = self.att_rgb(f_rgb)  # (B, Cr)
        a_depth = self.att_depth(f_depth)  # (B, Cd)
        ratio = self.mask_ratio if apply_mask else 0.0
        keep = topk_channel_mask(a_rgb, ratio)  # (B, Cr) in {0, 1}
        w_rgb = (a_rgb * keep)[:, :, None, None]  # masked channels: weight 0, no gradient
        w_depth = a_depth[:, :, None, None]
        if self.pool == "before":
            f_rgb, f_depth = f_rgb.mean((2, 3), keepdim=True), f_depth.mean((2, 3), keepdim=True)
        fused = self.conv(torch.cat([f_rgb * w_rgb, f_depth * w_depth], dim=1))  # Eq. 9
        z = self.projector(fused.mean(dim=(2, 3)))  # (B, D)
        return z, {"a_rgb": a_rgb, "a_depth": a_depth, "keep": keep}


def attention_entropy(scores: torch.Tensor) -> torch.Tensor:
    """Mean normalised entropy of per-sample attention (1 = uniform over channels)."""
    p = scores / scores.sum(dim=1, keepdim=True).clamp_min(1e-12)
    h = -(p * p.clamp_min(1e-12).log()).sum(dim=1) / math.log(scores.shape[1])
    return h.mean()
