"""Single-modality SSL objectives on RGB-D: one objective per stream.

``rgbd_mode=two_stream``: an RGB encoder (3 channels) and a depth encoder (1 channel), each with
its own heads, each trained with the method's objective on its own modality; the losses are
summed. ``rgbd_mode=early_fusion``: one encoder on the 4-channel RGB-D input; ``rgb_only`` /
``depth_only``: one modality (:class:`~solo_rgbd.nn.streams.Streams`). A method
subclass declares ``build_heads`` (online heads of one stream), optionally
``build_momentum`` (the momentum heads) and ``stream_loss``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from solo_rgbd.methods.base import (
    BaseMomentumMethod,
    MomentumKwargs,
    check_momentum,
)
from solo_rgbd.nn.backbone import Encoder
from solo_rgbd.nn.momentum import momentum_copy
from solo_rgbd.nn.streams import MODES, Streams

RGBD_MODES = tuple(MODES)


@dataclass
class StreamKwargs:
    rgbd_mode: str = "two_stream"  # two_stream | early_fusion | rgb_only | depth_only
    proj_hidden_dim: int = 2048
    proj_output_dim: int = 128


@dataclass
class MomentumStreamKwargs(StreamKwargs):
    momentum: MomentumKwargs = field(default_factory=MomentumKwargs)


class StreamMethod(BaseMomentumMethod):
    uses_momentum: bool = False
    #: the predictor heads (:meth:`make_predictor`) keep their lr; the rest follow the schedule
    #: (SimSiam: "the predictor works better with a fixed lr")
    predictor_static_lr: ClassVar[bool] = False
    Kwargs = StreamKwargs

    @classmethod
    def check_kwargs(cls, kw: dict[str, Any]) -> None:
        cls.require(
            kw["rgbd_mode"] in RGBD_MODES, "rgbd_mode", kw["rgbd_mode"], f"use one of {RGBD_MODES}"
        )
        if "momentum" in kw:
            check_momentum(kw, cls.require)

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.streams = Streams.of_mode(str(self.kwargs["rgbd_mode"]))
        self.stream_chans = self.streams.channels
        self.encoders = nn.ModuleDict(
            {s: self.make_encoder(c) for s, c in self.stream_chans.items()}
        )
        self.heads = nn.ModuleDict(
            {s: self.build_heads(self.encoders[s].num_features) for s in self.stream_chans}
        )
        # the predictor hook: a head on the projector's output, in its own parameter group
        dim = int(self.kwargs["proj_output_dim"])
        predictors = {s: self.make_predictor(dim) for s in self.stream_chans}
        self.predictors = nn.ModuleDict({s: p for s, p in predictors.items() if p is not None})
        if self.uses_momentum:
            self.encoders_k = nn.ModuleDict({s: momentum_copy(e) for s, e in self.encoders.items()})
            self.heads_k = nn.ModuleDict(
                {s: self.build_momentum(self.heads[s]) for s in self.stream_chans}
            )

    # ----- what a subclass provides -------------------------------------------------------
    def build_heads(self, in_dim: int) -> nn.ModuleDict:
        raise NotImplementedError

    def make_predictor(self, dim: int) -> nn.Module | None:
        """A predictor on the ``dim``-wide projection (SimSiam, BYOL-like); None: no predictor."""
        return None

    def build_momentum(self, heads: nn.ModuleDict) -> nn.Module:
        return momentum_copy(heads["projector"])

    def stream_loss(
        self, stream: str, x1: torch.Tensor, x2: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    # ----- shared -------------------------------------------------------------------------
    def embed(self, stream: str, x: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features (B, C) of one stream."""
        return Encoder.pool(self.encoders[stream](x))

    def project(self, stream: str, x: torch.Tensor) -> torch.Tensor:
        """The projector's output (B, D) of one stream's view."""
        return self.heads[stream]["projector"](self.embed(stream, x))

    def predict(self, stream: str, z: torch.Tensor) -> torch.Tensor:
        """The predictor (:meth:`make_predictor`) on a projection; the projection without one."""
        return self.predictors[stream](z) if stream in self.predictors else z

    @torch.no_grad()
    def embed_momentum(self, stream: str, x: torch.Tensor) -> torch.Tensor:
        return self.heads_k[stream](Encoder.pool(self.encoders_k[stream](x)))

    def stream_inputs(self, rgb: torch.Tensor, depth: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.streams.inputs(rgb, depth)

    @property
    def learnable_params(self) -> list[dict[str, Any]]:
        groups = [
            {"name": s, "params": [*self.encoders[s].parameters(), *self.heads[s].parameters()]}
            for s in self.stream_chans
        ]
        static = bool(self.predictor_static_lr)
        for s, predictor in self.predictors.items():
            groups.append(
                {"name": f"{s}_predictor", "params": [*predictor.parameters()], "static_lr": static}
            )
        return groups

    @property
    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        if not self.uses_momentum:
            return []
        pairs = []
        for s in self.stream_chans:
            pairs.append((self.encoders[s], self.encoders_k[s]))
            pairs.append((self.heads[s]["projector"], self.heads_k[s]))
        return pairs

    def export_encoders(self) -> dict[str, Encoder]:
        return dict(self.encoders.items())

    def objective(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        (rgb1, depth1), (rgb2, depth2) = batch["views"]
        x1, x2 = self.stream_inputs(rgb1, depth1), self.stream_inputs(rgb2, depth2)
        loss = torch.zeros((), device=rgb1.device)
        logs: dict[str, Any] = {}
        for stream in self.stream_chans:
            l_stream, extra = self.stream_loss(stream, x1[stream], x2[stream])
            loss = loss + l_stream
            logs[f"loss_{stream}"] = l_stream.detach()
            logs.update({f"{k}_{stream}": v for k, v in extra.items()})
        if self.should_log():
            self.log_scalars({"loss": loss.detach(), **logs}, prog_bar=("loss",))
        return {"loss": loss, **{k: v for k, v in logs.items() if k.startswith("loss_")}}


class ProjectorCriterionMethod(StreamMethod):
    """Methods of the form criterion(projector(f(x1)), projector(f(x2))) per stream:
    SimCLR, Barlow Twins, VICReg. Subclasses set ``self.criterion`` and ``make_projector``."""

    criterion: nn.Module

    def make_projector(self, in_dim: int) -> nn.Module:
        raise NotImplementedError

    def build_heads(self, in_dim: int) -> nn.ModuleDict:
        return nn.ModuleDict({"projector": self.make_projector(in_dim)})

    def stream_loss(self, stream, x1, x2):
        proj = self.heads[stream]["projector"]
        return self.criterion(proj(self.embed(stream, x1)), proj(self.embed(stream, x2))), {}
