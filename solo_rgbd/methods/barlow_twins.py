"""``method=barlow_twins``: the redundancy-reduction objective per stream on a 3-layer MLP
expander (lightly's BarlowTwinsProjectionHead and BarlowTwinsLoss)."""

from __future__ import annotations

from dataclasses import dataclass

from lightly.loss import BarlowTwinsLoss
from lightly.models.modules import BarlowTwinsProjectionHead
from torch import nn

from solo_rgbd.methods.registry import register_method
from solo_rgbd.methods.stream import ProjectorCriterionMethod, StreamKwargs


@dataclass
class BarlowTwinsKwargs(StreamKwargs):
    proj_output_dim: int = 2048
    lambda_offdiag: float = 0.0051


class ExpanderMethod(ProjectorCriterionMethod):
    """A criterion on a 3-layer MLP expander (Barlow Twins, VICReg)."""

    def make_projector(self, in_dim: int) -> nn.Module:
        kw = self.kwargs
        return BarlowTwinsProjectionHead(
            in_dim, int(kw["proj_hidden_dim"]), int(kw["proj_output_dim"])
        )


@register_method("barlow_twins")
class BarlowTwins(ExpanderMethod):
    Kwargs = BarlowTwinsKwargs

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.criterion = BarlowTwinsLoss(
            lambda_param=float(self.kwargs["lambda_offdiag"]), gather_distributed=True
        )
