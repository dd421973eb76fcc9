"""Projection heads."""

from __future__ import annotations

from torch import nn


def mocov2_projector(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Module:
    """MoCo v2's 2-layer MLP (2048-2048-128 for ResNet-50): Linear, ReLU, Linear."""
    from lightly.models.modules import MoCoProjectionHead

    return MoCoProjectionHead(input_dim=in_dim, hidden_dim=hidden_dim, output_dim=out_dim)
