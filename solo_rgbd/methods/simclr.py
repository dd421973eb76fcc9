"""``method=simclr``: SimCLR per stream, NT-Xent over the batch (lightly's NTXentLoss)."""

from __future__ import annotations

from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead
from torch import nn

from solo_rgbd.methods.registry import register_method
from solo_rgbd.methods.stream import StreamMethod


@register_method("simclr")
class SimCLR(StreamMethod):
    defaults = {
        **StreamMethod.stream_defaults,
        "proj_hidden_dim": 2048,
        "proj_output_dim": 128,
        "temperature": 0.2,
    }

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.criterion = NTXentLoss(
            temperature=float(self.kwargs["temperature"]), gather_distributed=True
        )

    def build_heads(self, in_dim: int) -> nn.ModuleDict:
        kw = self.kwargs
        return nn.ModuleDict(
            {
                "projector": SimCLRProjectionHead(
                    in_dim, int(kw["proj_hidden_dim"]), int(kw["proj_output_dim"])
                )
            }
        )

    def stream_loss(self, stream, x1, x2):
        proj = self.heads[stream]["projector"]
        return self.criterion(proj(self.embed(stream, x1)), proj(self.embed(stream, x2))), {}
