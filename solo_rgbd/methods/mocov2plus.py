"""``method=mocov2plus``: MoCo v2 per stream (the paper's "Intra-modal" baseline, two_stream).

Momentum copies and a queue per stream, the same parts as MBCF's IntraCLM; each stream's
InfoNCE at ``temperature`` (0.1, the paper's tau_intra) is summed. ``rgbd_mode=early_fusion``
runs one stream on 4-channel RGB-D, ``rgb_only`` / ``depth_only`` one modality.
``symmetric=false`` (default) is MoCo v2 and the paper's IntraCLM (view 1 queries, view 2
keys); ``symmetric=true`` adds the swapped term like solo-learn's mocov2plus (twice the
encoder passes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from solo_rgbd.losses.mbcf import intra_loss
from solo_rgbd.methods.diagnostics import contrast_row
from solo_rgbd.methods.momentum import MoCoKwargs, MomentumMethod
from solo_rgbd.methods.registry import register_method
from solo_rgbd.nn.queue import KeyQueue


@dataclass
class MoCoV2PlusKwargs(MoCoKwargs):
    rgbd_mode: str = "two_stream"  # two_stream | early_fusion | rgb_only | depth_only
    temperature: float = 0.1
    symmetric: bool = False  # true: also the swapped term (solo-learn's mocov2plus)


@register_method("mocov2plus")
class MoCoV2Plus(MomentumMethod):
    Kwargs = MoCoV2PlusKwargs

    @classmethod
    def check_kwargs(cls, kw: dict[str, Any]) -> None:
        super().check_kwargs(kw)
        cls.require(float(kw["temperature"]) > 0, "temperature", kw["temperature"], "must be > 0")

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        size, dim = int(self.kwargs["queue_size"]), int(self.kwargs["proj_output_dim"])
        self.queues = nn.ModuleDict({s: KeyQueue(size, dim) for s in self.streams})

    def objective(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        (rgb1, depth1), (rgb2, depth2) = batch["views"]
        ids = batch["index"]  # (B,): the queues skip a query's own keys
        x1, x2 = self.streams.inputs(rgb1, depth1), self.streams.inputs(rgb2, depth2)
        tau, symmetric = float(self.kwargs["temperature"]), bool(self.kwargs["symmetric"])
        q1 = {s: self.project(s, x) for s, x in x1.items()}  # {s: (B, D)}
        _, k2 = self.momentum_forward(x2)
        negatives, exclude = self.negatives(), self.exclusions(ids)
        loss, losses, logits = intra_loss(q1, k2, negatives, tau, exclude)
        if symmetric:
            q2 = {s: self.project(s, x) for s, x in x2.items()}
            _, k1 = self.momentum_forward(x1)
            _, swapped, _ = intra_loss(q2, k1, negatives, tau, exclude)
            losses = {s: (losses[s] + swapped[s]) / 2 for s in losses}
            loss = sum(losses.values(), torch.zeros((), device=rgb1.device))
        self.enqueue(k2, ids)  # after the loss, explicitly
        if symmetric:
            self.enqueue(k1, ids)
        if self.should_log():
            self.log("loss", loss.detach(), prog_bar=True)
            self.log_dict(contrast_row(losses, logits, q1, k2))
        return {"loss": loss, **{f"loss_{s}": v.detach() for s, v in losses.items()}}
