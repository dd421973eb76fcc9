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

Which channels are masked (``mask_mode``; issue 31's controls, which the paper never ran):

- ``topk`` (the paper): the ``mask_ratio`` share with the highest attention, per sample;
- ``random``: a fresh random share per sample and step (no attention involved);
- ``static_random``: one random share drawn once (a buffer, so it lives in the checkpoint);
- ``bottomk``: the least attended share (the mirror of ``topk``, which cannot ratchet);
- ``none``: nothing.
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


MASK_MODES = ("topk", "random", "static_random", "bottomk", "none")


def random_channel_mask(shape: tuple[int, int], ratio: float, device=None) -> torch.Tensor:
    """A {0, 1} mask (B, C) zeroing exactly ``floor(ratio * C)`` random channels per row, drawn
    from torch's global generator (which a checkpoint saves, so a resumed run draws the same)."""
    return topk_channel_mask(torch.rand(shape, device=device), ratio)


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation scores: GAP -> Linear(C, C/r) -> ReLU -> Linear -> sigmoid."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.mlp = nn.Sequential(
            nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels)
        )

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(fmap))  # (B, C)

    def logits(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.mlp(fmap.mean(dim=(2, 3)))  # (B, C), before the sigmoid


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
        mask_mode: str = "topk",
    ) -> None:
        super().__init__()
        if pool not in ("after", "before"):
            raise ValueError(f"fusion pool must be 'after' or 'before', got {pool!r}.")
        if conv_kernel not in (1, 3):
            raise ValueError(f"fusion conv_kernel must be 1 or 3, got {conv_kernel}.")
        if mask_mode not in MASK_MODES:
            raise ValueError(f"fusion mask_mode must be one of {MASK_MODES}, got {mask_mode!r}.")
        self.mask_ratio = mask_ratio
        self.mask_mode = mask_mode
        self.pool = pool
        # static_random: one half drawn now (from the seeded global generator), kept as a
        # buffer so it is saved in the checkpoint and the export of the run
        static = None  # drawn only in that mode: other modes' initial weights stay as they were
        if mask_mode == "static_random":
            static = random_channel_mask((1, rgb_channels), mask_ratio)[0]
        self.register_buffer("static_keep", static)
        self.att_rgb = ChannelAttention(rgb_channels, attention_reduction)
        self.att_depth = ChannelAttention(depth_channels, attention_reduction)
        kernel = conv_kernel if pool == "after" else 1
        self.conv = nn.Sequential(
            nn.Conv2d(rgb_channels + depth_channels, dim, kernel, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(dim),
            nn.ReLU(inplace=True),
        )
        self.projector = mocov2_projector(dim, proj_hidden_dim, proj_output_dim)

    def keep_mask(self, a_rgb: torch.Tensor) -> torch.Tensor:
        """The {0, 1} keep mask (B, Cr) of ``mask_mode`` for attention scores ``a_rgb``."""
        mode, ratio = self.mask_mode, self.mask_ratio
        if mode == "topk":
            return topk_channel_mask(a_rgb, ratio)
        if mode == "bottomk":
            return topk_channel_mask(-a_rgb, ratio)
        if mode == "random":
            return random_channel_mask(tuple(a_rgb.shape), ratio, a_rgb.device)
        if mode == "static_random":
            return self.static_keep.to(a_rgb.dtype).expand_as(a_rgb)
        return torch.ones_like(a_rgb)

    def forward(
        self,
        f_rgb: torch.Tensor,
        f_depth: torch.Tensor,
        apply_mask: bool = True,
        keep: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """f_rgb (B, Cr, h, w), f_depth (B, Cd, h, w) -> z (B, D) and attention details;
        ``keep`` (B, Cr) overrides the mask (a random draw shared by query and key)."""
        logits_rgb = self.att_rgb.logits(f_rgb)  # (B, Cr)
        a_rgb = torch.sigmoid(logits_rgb)
        a_depth = self.att_depth(f_depth)  # (B, Cd)
        if keep is None:
            keep = self.keep_mask(a_rgb) if apply_mask else torch.ones_like(a_rgb)
        keep = keep.to(a_rgb.dtype)  # (B, Cr) in {0, 1}
        w_rgb = (a_rgb * keep)[:, :, None, None]  # masked channels: weight 0, no gradient
        w_depth = a_depth[:, :, None, None]
        if self.pool == "before":
            f_rgb, f_depth = f_rgb.mean((2, 3), keepdim=True), f_depth.mean((2, 3), keepdim=True)
        fused = self.conv(torch.cat([f_rgb * w_rgb, f_depth * w_depth], dim=1))  # Eq. 9
        z = self.projector(fused.mean(dim=(2, 3)))  # (B, D)
        return z, {"a_rgb": a_rgb, "a_depth": a_depth, "keep": keep, "logits_rgb": logits_rgb}


def attention_entropy(scores: torch.Tensor) -> torch.Tensor:
    """Mean normalised entropy of per-sample attention (1 = uniform over channels)."""
    p = scores / scores.sum(dim=1, keepdim=True).clamp_min(1e-12)
    h = -(p * p.clamp_min(1e-12).log()).sum(dim=1) / math.log(scores.shape[1])
    return h.mean()
