"""``method=barlow_twins``: the redundancy-reduction objective per stream on a 3-layer MLP
expander (lightly's BarlowTwinsProjectionHead and BarlowTwinsLoss)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lightly.loss import BarlowTwinsLoss
from lightly.models.modules import BarlowTwinsProjectionHead
from torch import nn

from solo_rgbd.methods.base import BaseMethod, StreamKwargs
from solo_rgbd.methods.registry import register_method


@dataclass
class BarlowTwinsKwargs(StreamKwargs):
    proj_output_dim: int = 2048
    lambda_offdiag: float = 0.0051


def expander(in_dim: int, kw: dict[str, Any]) -> nn.Module:
    """The 3-layer MLP expander of Barlow Twins (VICReg uses it too)."""
    return BarlowTwinsProjectionHead(in_dim, int(kw["proj_hidden_dim"]), int(kw["proj_output_dim"]))


@register_method("barlow_twins")
class BarlowTwins(BaseMethod):
    Kwargs = BarlowTwinsKwargs

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.criterion = BarlowTwinsLoss(
            lambda_param=float(self.kwargs["lambda_offdiag"]), gather_distributed=True
        )

    def make_projector(self, in_dim: int) -> nn.Module:
        return expander(in_dim, self.kwargs)

    def stream_loss(self, stream, x1, x2):
        return self.criterion(self.project(stream, x1), self.project(stream, x2)), {}
