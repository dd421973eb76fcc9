"""``method=barlow_twins`` and ``method=vicreg``: redundancy-reduction objectives per stream
on a 3-layer MLP expander (lightly's BarlowTwinsProjectionHead, BarlowTwinsLoss, VICRegLoss)."""

from __future__ import annotations

from lightly.loss import BarlowTwinsLoss, VICRegLoss
from lightly.models.modules import BarlowTwinsProjectionHead
from torch import nn

from solo_rgbd.methods.registry import register_method
from solo_rgbd.methods.stream import ProjectorCriterionMethod, StreamMethod


class _ExpanderMethod(ProjectorCriterionMethod):
    def make_projector(self, in_dim: int) -> nn.Module:
        kw = self.kwargs
        return BarlowTwinsProjectionHead(
            in_dim, int(kw["proj_hidden_dim"]), int(kw["proj_output_dim"])
        )


@register_method("barlow_twins")
class BarlowTwins(_ExpanderMethod):
    defaults = {
        **StreamMethod.stream_defaults,
        "proj_hidden_dim": 2048,
        "proj_output_dim": 2048,
        "lambda_offdiag": 0.0051,
    }

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.criterion = BarlowTwinsLoss(
            lambda_param=float(self.kwargs["lambda_offdiag"]), gather_distributed=True
        )


@register_method("vicreg")
class VICReg(_ExpanderMethod):
    defaults = {
        **StreamMethod.stream_defaults,
        "proj_hidden_dim": 2048,
        "proj_output_dim": 2048,
        "sim_weight": 25.0,
        "var_weight": 25.0,
        "cov_weight": 1.0,
    }

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        kw = self.kwargs
        self.criterion = VICRegLoss(
            lambda_param=float(kw["sim_weight"]),
            mu_param=float(kw["var_weight"]),
            nu_param=float(kw["cov_weight"]),
            gather_distributed=True,
        )
