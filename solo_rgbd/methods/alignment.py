"""``method=alignment``: cross-modal alignment, the paper's Table 4 baseline.

IntraCLM as in MBCF (MoCo per modality, tau 0.1), plus a CMC-style cross-modal InfoNCE in
place of the fusion encoder: the RGB query of a scene is pulled to the depth key of the same
scene and pushed from the depth queue, and symmetrically (tau_align = 0.1, the paper's best
for alignment):

    L_align = L(q^r, k^d_+, queue^d) + L(q^d, k^r_+, queue^r)
    J = lambda1 * L_intra + lambda2 * L_align

with MBCF's schedules (two_stage: alignment from stage 2 on). Both projectors map to the same
128-d space, so the modalities' queues serve as each other's negatives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from solo_rgbd.losses.alignment import alignment_loss
from solo_rgbd.losses.infonce import top1_accuracy
from solo_rgbd.losses.mbcf import total_loss
from solo_rgbd.methods.mbcf import IntraCLM, IntraKwargs
from solo_rgbd.methods.registry import register_method


@dataclass
class AlignmentKwargs(IntraKwargs):
    tau_align: float = 0.1  # the cross-modal InfoNCE (lambda_inter weighs it)


@register_method("alignment")
class Alignment(IntraCLM):
    Kwargs = AlignmentKwargs

    @classmethod
    def check_kwargs(cls, kw: dict[str, Any]) -> None:
        super().check_kwargs(kw)
        cls.require(float(kw["tau_align"]) > 0, "tau_align", kw["tau_align"], "must be > 0")

    def objective(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        kw = self.kwargs
        (rgb_q, depth_q), (rgb_k, depth_k) = batch["views"]
        ids = batch["index"]  # (B,): the queues skip a query's own keys
        q = self(rgb_q, depth_q)
        k = self.momentum_forward(rgb_k, depth_k)
        l_intra, intra = self.intra(q, k, ids)
        l_align, parts = None, {}
        if self.stage == 2:
            l_align, parts = alignment_loss(
                q["z_rgb"],
                k["z_depth"],
                self.queues["depth"].negatives(),
                q["z_depth"],
                k["z_rgb"],
                self.queues["rgb"].negatives(),
                float(kw["tau_align"]),
                exclude_depth=self.exclusion(self.queues["depth"], ids),
                exclude_rgb=self.exclusion(self.queues["rgb"], ids),
            )
        loss = total_loss(l_intra, l_align, float(kw["lambda_intra"]), float(kw["lambda_inter"]))
        self.enqueue_intra(k, ids)
        if self.should_log():
            values = self.intra_diagnostics(loss, l_intra, intra, q, k)
            if l_align is not None:
                values["loss_align"] = l_align.detach()
                values["acc_rgb_to_depth"] = top1_accuracy(parts["logits_rgb_to_depth"])
                values["acc_depth_to_rgb"] = top1_accuracy(parts["logits_depth_to_rgb"])
            self.log_dict(values)
            self.log_dict({k: values[k] for k in ("loss", "stage")}, prog_bar=True)
        terms = {"loss_intra": l_intra, "loss_align": l_align}  # l_align: None in stage 1
        return {"loss": loss, **{k: v for k, v in terms.items() if v is not None}}
