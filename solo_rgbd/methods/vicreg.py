"""``method=vicreg``: variance-invariance-covariance regularisation per stream on a 3-layer MLP
expander (lightly's VICRegLoss), the expander shared with Barlow Twins."""

from __future__ import annotations

from dataclasses import dataclass

from lightly.loss import VICRegLoss
from torch import nn

from solo_rgbd.methods.barlow_twins import expander
from solo_rgbd.methods.base import BaseMethod, StreamKwargs
from solo_rgbd.methods.registry import register_method


@dataclass
class VICRegKwargs(StreamKwargs):
    proj_output_dim: int = 2048
    sim_weight: float = 25.0
    var_weight: float = 25.0
    cov_weight: float = 1.0


@register_method("vicreg")
class VICReg(BaseMethod):
    Kwargs = VICRegKwargs

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        kw = self.kwargs
        self.criterion = VICRegLoss(
            lambda_param=float(kw["sim_weight"]),
            mu_param=float(kw["var_weight"]),
            nu_param=float(kw["cov_weight"]),
            gather_distributed=True,
        )

    def make_projector(self, in_dim: int) -> nn.Module:
        return expander(in_dim, self.kwargs)

    def stream_loss(self, stream, x1, x2):
        return self.criterion(self.project(stream, x1), self.project(stream, x2)), {}
