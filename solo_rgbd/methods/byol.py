"""``method=byol``: BYOL per stream: online projector + predictor, momentum target, symmetric
negative cosine similarity (lightly's heads and loss)."""

from __future__ import annotations

from dataclasses import dataclass

from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
from torch import nn

from solo_rgbd.methods.momentum import MomentumMethod, MomentumStreamKwargs
from solo_rgbd.methods.registry import register_method


@dataclass
class BYOLKwargs(MomentumStreamKwargs):
    proj_hidden_dim: int = 4096
    proj_output_dim: int = 256
    pred_hidden_dim: int = 4096


@register_method("byol")
class BYOL(MomentumMethod):
    Kwargs = BYOLKwargs

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.criterion = NegativeCosineSimilarity()

    def make_projector(self, in_dim: int) -> nn.Module:
        kw = self.kwargs
        return BYOLProjectionHead(in_dim, int(kw["proj_hidden_dim"]), int(kw["proj_output_dim"]))

    def make_predictor(self, dim: int) -> nn.Module:
        return BYOLPredictionHead(dim, int(self.kwargs["pred_hidden_dim"]), dim)

    def stream_loss(self, stream, x1, x2):
        p1 = self.predict(stream, self.project(stream, x1))
        p2 = self.predict(stream, self.project(stream, x2))
        t1, t2 = self.embed_momentum(stream, x1), self.embed_momentum(stream, x2)
        return 0.5 * (self.criterion(p1, t2) + self.criterion(p2, t1)), {}
