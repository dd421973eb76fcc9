"""SimSiam as a plug-in of the method template (Chen & He, 2021): projector, predictor
with a fixed lr, stop-gradient on the other view's projection; no momentum, no negatives."""

from dataclasses import dataclass

from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules import SimSiamPredictionHead, SimSiamProjectionHead
from torch import nn

from solo_rgbd.methods.base import BaseMethod, StreamKwargs


@dataclass
class SimSiamKwargs(StreamKwargs):
    proj_hidden_dim: int = 2048
    proj_output_dim: int = 2048
    pred_hidden_dim: int = 512


class SimSiam(BaseMethod):
    method_name = "simsiam"
    Kwargs = SimSiamKwargs
    predictor_static_lr = True  # the paper's fixed predictor lr

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.criterion = NegativeCosineSimilarity()

    def make_projector(self, in_dim: int) -> nn.Module:
        hidden, out = int(self.kwargs["proj_hidden_dim"]), int(self.kwargs["proj_output_dim"])
        return SimSiamProjectionHead(in_dim, hidden, out)

    def make_predictor(self, dim: int) -> nn.Module:
        return SimSiamPredictionHead(dim, int(self.kwargs["pred_hidden_dim"]), dim)

    def stream_loss(self, stream, x1, x2):
        z1, z2 = self.project(stream, x1), self.project(stream, x2)
        p1, p2 = self.predict(stream, z1), self.predict(stream, z2)
        loss = 0.5 * (self.criterion(p1, z2.detach()) + self.criterion(p2, z1.detach()))
        return loss, {"z_std": z1.detach().std(0).mean()}  # collapse shows as std -> 0
