"""``method=alignment``: cross-modal alignment, the paper's Table 4 baseline.

IntraCLM as in MBCF (MoCo per modality, tau 0.1, MBCF's schedules), plus a CMC-style cross-modal
InfoNCE in place of the fusion encoder: the RGB query of a scene is pulled to the depth key of
the same scene and pushed from the depth queue, and symmetrically (tau_align = 0.1, the paper's
best for alignment):

    L_align = L(q^r, k^d_+, queue^d) + L(q^d, k^r_+, queue^r)
    J = lambda1 * L_intra + lambda2 * L_align

(two_stage: alignment from stage 2 on). Both projectors map to the same 128-d space, so the
modalities' queues serve as each other's negatives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from solo_rgbd.losses.alignment import alignment_loss
from solo_rgbd.losses.infonce import top1_accuracy
from solo_rgbd.losses.mbcf import intra_loss, total_loss
from solo_rgbd.methods.diagnostics import contrast_row
from solo_rgbd.methods.mbcf import IntraKwargs, check_intra
from solo_rgbd.methods.momentum import MomentumMethod
from solo_rgbd.methods.registry import register_method
from solo_rgbd.nn.queue import KeyQueue


@dataclass
class AlignmentKwargs(IntraKwargs):
    tau_align: float = 0.1  # the cross-modal InfoNCE (lambda_inter weighs it)


@register_method("alignment")
class Alignment(MomentumMethod):
    Kwargs = AlignmentKwargs
    has_own_schedule = True

    @classmethod
    def check_kwargs(cls, kw: dict[str, Any]) -> None:
        super().check_kwargs(kw)
        check_intra(kw, cls.require)
        cls.require(float(kw["tau_align"]) > 0, "tau_align", kw["tau_align"], "must be > 0")

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        size, dim = int(self.kwargs["queue_size"]), int(self.kwargs["proj_output_dim"])
        self.queues = nn.ModuleDict({s: KeyQueue(size, dim) for s in self.streams})
        self.use_stages()

    def objective(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        kw = self.kwargs
        (rgb_q, depth_q), (rgb_k, depth_k) = batch["views"]
        ids = batch["index"]  # (B,): the queues skip a query's own keys
        q = {s: self.project(s, x) for s, x in self.streams.inputs(rgb_q, depth_q).items()}
        _, k = self.momentum_forward(self.streams.inputs(rgb_k, depth_k))
        negatives, exclude = self.negatives(), self.exclusions(ids)
        l_intra, l_streams, logits = intra_loss(q, k, negatives, float(kw["tau_intra"]), exclude)
        l_align, cross = None, {}
        if self.stage == 2:
            l_align, cross = alignment_loss(q, k, negatives, float(kw["tau_align"]), exclude)
        loss = total_loss(l_intra, l_align, float(kw["lambda_intra"]), float(kw["lambda_inter"]))
        self.enqueue(k, ids)
        if self.should_log():
            step = self.global_step
            row = {
                "loss": loss.detach(),
                "loss_intra": l_intra.detach(),
                "stage": float(self.stage),
                "lr": self.lr_at(step),
                **contrast_row(l_streams, logits, q, k),
            }
            if l_align is not None:
                row["loss_align"] = l_align.detach()
                row.update({f"acc_{name}": top1_accuracy(lg) for name, lg in cross.items()})
            self.log_dict(row)
            self.log_dict({name: row[name] for name in ("loss", "stage")}, prog_bar=True)
        terms = {"loss_intra": l_intra, "loss_align": l_align}  # l_align: None in stage 1
        return {"loss": loss, **{n: t for n, t in terms.items() if t is not None}}
