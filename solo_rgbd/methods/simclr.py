"""``method=simclr``: SimCLR per stream, NT-Xent over the batch (lightly's NTXentLoss)."""

from __future__ import annotations

from dataclasses import dataclass

from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead
from torch import nn

from solo_rgbd.methods.base import BaseMethod, StreamKwargs
from solo_rgbd.methods.registry import register_method


@dataclass
class SimCLRKwargs(StreamKwargs):
    temperature: float = 0.2


@register_method("simclr")
class SimCLR(BaseMethod):
    Kwargs = SimCLRKwargs

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.criterion = NTXentLoss(
            temperature=float(self.kwargs["temperature"]), gather_distributed=True
        )

    def make_projector(self, in_dim: int) -> nn.Module:
        kw = self.kwargs
        return SimCLRProjectionHead(in_dim, int(kw["proj_hidden_dim"]), int(kw["proj_output_dim"]))

    def stream_loss(self, stream, x1, x2):
        return self.criterion(self.project(stream, x1), self.project(stream, x2)), {}
