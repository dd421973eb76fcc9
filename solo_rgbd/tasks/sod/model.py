"""The downstream RGB-D SOD network: a DCF-like decoder on two (frozen) encoders.

Per level (the last four encoder stages), a cross-modal fusion block (channel attention per
modality, concatenation, 3x3 conv) fuses RGB and depth features; a top-down decoder merges the
levels from deep to shallow, and every decoder level has a side output (deep supervision). All
outputs are upsampled to the input resolution. As in the paper (and DCF without its depth
calibration), the encoders are frozen by default; ``freeze=False`` fine-tunes them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from solo_rgbd.nn.backbone import Encoder
from solo_rgbd.nn.fusion import ChannelAttention


def conv_bn_relu(cin: int, cout: int, k: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, padding=k // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class CrossModalFusion(nn.Module):
    """(F_rgb, F_depth) at one level -> (B, dim, h, w)."""

    def __init__(self, c_rgb: int, c_depth: int, dim: int) -> None:
        super().__init__()
        self.att_rgb = ChannelAttention(c_rgb, reduction=4)
        self.att_depth = ChannelAttention(c_depth, reduction=4)
        self.conv = conv_bn_relu(c_rgb + c_depth, dim)

    def forward(self, f_rgb: torch.Tensor, f_depth: torch.Tensor) -> torch.Tensor:
        a_rgb = self.att_rgb(f_rgb)[:, :, None, None]
        a_depth = self.att_depth(f_depth)[:, :, None, None]
        return self.conv(torch.cat([f_rgb * a_rgb, f_depth * a_depth], dim=1))


class SingleStreamBlock(nn.Module):
    """Early-fusion encoders (one 4-channel stream): channel attention and a 3x3 conv."""

    def __init__(self, channels: int, dim: int) -> None:
        super().__init__()
        self.att = ChannelAttention(channels, reduction=4)
        self.conv = conv_bn_relu(channels, dim)

    def forward(self, f: torch.Tensor, _: None = None) -> torch.Tensor:
        return self.conv(f * self.att(f)[:, :, None, None])


class SODDecoder(nn.Module):
    """Fusion per level, top-down merge, a side output per level.

    ``depth_channels=None`` is the early-fusion case: one RGB-D stream, no cross-modal block.
    """

    def __init__(
        self, rgb_channels: list[int], depth_channels: list[int] | None, dim: int = 64
    ) -> None:
        super().__init__()
        if depth_channels is None:
            self.fuse = nn.ModuleList(SingleStreamBlock(c, dim) for c in rgb_channels)
        else:
            self.fuse = nn.ModuleList(
                CrossModalFusion(cr, cd, dim)
                for cr, cd in zip(rgb_channels, depth_channels, strict=True)
            )
        self.merge = nn.ModuleList(conv_bn_relu(dim, dim) for _ in rgb_channels[:-1])
        self.side = nn.ModuleList(nn.Conv2d(dim, 1, 1) for _ in rgb_channels)

    def forward(
        self,
        feats_rgb: list[torch.Tensor],
        feats_depth: list[torch.Tensor] | None,
        out_size: tuple[int, int],
    ) -> list[torch.Tensor]:
        depth = feats_depth or [None] * len(feats_rgb)
        fused = [f(r, d) for f, r, d in zip(self.fuse, feats_rgb, depth, strict=True)]
        x = fused[-1]  # deepest level
        decoded = [x]
        for level in range(len(fused) - 2, -1, -1):  # deep -> shallow
            x = F.interpolate(x, size=fused[level].shape[-2:], mode="bilinear", align_corners=False)
            x = self.merge[level](x + fused[level])
            decoded.insert(0, x)
        return [
            F.interpolate(head(d), size=out_size, mode="bilinear", align_corners=False)
            for head, d in zip(self.side, decoded, strict=True)
        ]  # finest first


class SODNet(nn.Module):
    """Encoders + :class:`SODDecoder`. ``forward`` returns side logits, finest first.

    Two streams (an RGB and a depth encoder), or, with ``depth_encoder=None``, one early-fusion
    encoder whose input is the 4-channel concatenation of RGB and depth.
    """

    def __init__(
        self,
        rgb_encoder: Encoder,
        depth_encoder: Encoder | None,
        dim: int = 64,
        freeze: bool = True,
    ) -> None:
        super().__init__()
        self.rgb_encoder = rgb_encoder
        self.depth_encoder = depth_encoder
        self.freeze = freeze
        depth_channels = depth_encoder.stage_channels if depth_encoder is not None else None
        self.decoder = SODDecoder(rgb_encoder.stage_channels, depth_channels, dim)
        if freeze:
            for p in self.encoder_parameters():
                p.requires_grad_(False)

    def encoders(self) -> list[Encoder]:
        return [e for e in (self.rgb_encoder, self.depth_encoder) if e is not None]

    def encoder_parameters(self) -> list[nn.Parameter]:
        return [p for e in self.encoders() for p in e.parameters()]

    def train(self, mode: bool = True) -> SODNet:
        super().train(mode)
        if self.freeze:  # frozen encoders keep their BatchNorm statistics
            for e in self.encoders():
                e.eval()
        return self

    def forward(self, rgb: torch.Tensor, depth: torch.Tensor) -> list[torch.Tensor]:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            if self.depth_encoder is None:  # early fusion
                feats_rgb, feats_depth = self.rgb_encoder.stages(torch.cat([rgb, depth], 1)), None
            else:
                feats_rgb = self.rgb_encoder.stages(rgb)
                feats_depth = self.depth_encoder.stages(depth)
        return self.decoder(feats_rgb, feats_depth, rgb.shape[-2:])

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]
