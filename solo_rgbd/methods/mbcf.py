"""MBCF: Modality-Balanced Contrastive Fusion (``method=mbcf``).

Two encoders (RGB, depth) with momentum copies and MoCo v2 projectors, trained by

- IntraCLM (Eq. 1-4): MoCo per modality, each with its own queue, InfoNCE at tau_intra = 0.1;
- InterCLM (Eq. 5-7, 9): a fusion encoder on the two encoders' last feature maps (channel
  attention per modality, the top ``mask_ratio`` RGB channels by attention zeroed per sample,
  concatenation, conv, pooling, projector), a momentum fusion encoder for keys on the momentum
  encoders' maps (no extra backbone pass), its own queue, InfoNCE at tau_inter = 0.04;
- J = lambda1 * L_intra + lambda2 * L_inter (Eq. 8), 0.5 each.

Schedules (see :mod:`solo_rgbd.methods.intra`): ``two_stage`` (the paper's best) trains
IntraCLM alone for ``stage1_epochs`` at ``stage1_lr`` (J = L_intra: plain MoCo per modality),
then both for ``stage2_epochs`` at ``stage2_lr``; before the switch the fusion encoders and the
fused queue are untouched. ``one_stage`` trains both from the start; ``intra_only`` never
switches (the "Intra-modal" ablation).

The MoCo loss is asymmetric (view 1 queries, view 2 keys) as in MoCo and the paper. The key
side can use MoCo's shuffle-BN (``shuffle_bn``, on in ``experiment=paper``). Under DDP the
runner turns on ``find_unused_parameters`` because the fusion encoder gets no gradient in
stage 1. See ``solo_rgbd/nn/fusion.py`` for the fusion encoder's choices where the paper is
open, and ``docs/paper.md`` for every setting of the paper preset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from solo_rgbd.losses.infonce import top1_accuracy
from solo_rgbd.losses.mbcf import inter_loss, total_loss
from solo_rgbd.methods.intra import IntraCLM, IntraKwargs
from solo_rgbd.methods.registry import register_method
from solo_rgbd.nn.distributed import gather_keys
from solo_rgbd.nn.fusion import FusionEncoder, attention_entropy
from solo_rgbd.nn.momentum import momentum_copy
from solo_rgbd.nn.queue import KeyQueue


@dataclass
class FusionKwargs:
    mask_ratio: float = 0.5  # share of RGB channels with the highest attention zeroed
    mask_keys: bool = True  # mask the momentum fusion encoder's RGB channels too
    dim: int = 2048  # channels after the fusion conv
    conv_kernel: int = 1  # 1 or 3
    attention_reduction: int = 16  # channel-attention MLP: C -> C / r -> C
    pool: str = "after"  # global average pooling after the conv (or 'before')


@dataclass
class MBCFKwargs(IntraKwargs):
    tau_inter: float = 0.04  # Eq. 7
    fusion: FusionKwargs = field(default_factory=FusionKwargs)


@register_method("mbcf")
class MBCF(IntraCLM):
    Kwargs = MBCFKwargs

    @classmethod
    def check_kwargs(cls, kw: dict[str, Any]) -> None:
        super().check_kwargs(kw)
        req, fus = cls.require, kw["fusion"]
        req(float(kw["tau_inter"]) > 0, "tau_inter", kw["tau_inter"], "must be > 0")
        req(
            0 <= float(fus["mask_ratio"]) < 1,
            "fusion.mask_ratio",
            fus["mask_ratio"],
            "must be in [0, 1)",
        )
        req(fus["pool"] in ("after", "before"), "fusion.pool", fus["pool"], "use after or before")
        req(fus["conv_kernel"] in (1, 3), "fusion.conv_kernel", fus["conv_kernel"], "use 1 or 3")

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        kw, fus = self.kwargs, self.kwargs["fusion"]
        # fusion encoder f_Fq (Eq. 5, 9) and its momentum copy f_Fk (Eq. 6)
        self.fusion = FusionEncoder(
            self.rgb_encoder.num_features,
            self.depth_encoder.num_features,
            dim=int(fus["dim"]),
            proj_hidden_dim=int(kw["proj_hidden_dim"]),
            proj_output_dim=int(kw["proj_output_dim"]),
            mask_ratio=float(fus["mask_ratio"]),
            conv_kernel=int(fus["conv_kernel"]),
            attention_reduction=int(fus["attention_reduction"]),
            pool=str(fus["pool"]),
        )
        self.fusion_k = momentum_copy(self.fusion)
        self.queue_fused = KeyQueue(int(kw["queue_size"]), int(kw["proj_output_dim"]))

    def inter_modules(self):
        return [(self.fusion, self.fusion_k)]

    def objective(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        kw = self.kwargs
        (rgb_q, depth_q), (rgb_k, depth_k) = batch["views"]
        ids = batch["index"]  # (B,) sample of each pair: the queues skip a query's own keys
        q = self(rgb_q, depth_q)  # Eq. 1
        k = self.momentum_forward(rgb_k, depth_k)  # Eq. 2
        l_intra, intra = self.intra(q, k, ids)  # Eq. 3-4
        l_inter, fused_k, logits_f, att = None, None, None, None
        if self.stage == 2:
            # InterCLM: Eq. 5 and 9 (query), Eq. 6 (key), Eq. 7 (loss)
            fused_q, att = self.fusion(q["fmap_rgb"], q["fmap_depth"])
            mask_keys = bool(kw["fusion"]["mask_keys"])
            fused_k, _ = self.key_forward(
                lambda r, d: self.fusion_k(r, d, apply_mask=mask_keys),
                k["fmap_rgb"],
                k["fmap_depth"],
            )
            l_inter, logits_f = inter_loss(
                fused_q,
                fused_k,
                self.queue_fused.negatives(),
                tau=float(kw["tau_inter"]),
                exclude=self.exclusion(self.queue_fused, ids),
            )
        loss = total_loss(l_intra, l_inter, float(kw["lambda_intra"]), float(kw["lambda_inter"]))

        # after the loss, explicitly: this step's keys (from every rank) enter the queues
        self.enqueue_intra(k, ids)
        if fused_k is not None:
            self.queue_fused.enqueue(gather_keys(fused_k), gather_keys(ids))

        if self.should_log():
            values = self.intra_diagnostics(loss, l_intra, intra, q, k)
            if l_inter is not None:
                values.update(self._fusion_diagnostics(l_inter, logits_f, att))
                values["acc_batch_inter"] = self.batch_accuracy(fused_q, fused_k)
            self.log_scalars(values, prog_bar=("loss", "stage"))
        terms = {"loss_intra": l_intra, "loss_inter": l_inter}  # l_inter: None in stage 1
        return {"loss": loss, **{k: v for k, v in terms.items() if v is not None}}

    @staticmethod
    def _fusion_diagnostics(l_inter, logits_f, att) -> dict[str, Any]:
        """Modality balance: attention spread, and how much RGB attention the mask removes."""
        keep, a_rgb = att["keep"], att["a_rgb"].detach()
        return {
            "loss_inter": l_inter.detach(),
            "acc_inter": top1_accuracy(logits_f),
            "attention_entropy_rgb": attention_entropy(a_rgb),
            "attention_entropy_depth": attention_entropy(att["a_depth"].detach()),
            "rgb_masked_share": 1.0 - keep.mean(),
            "rgb_masked_attention_mass": ((a_rgb * (1 - keep)).sum(1) / a_rgb.sum(1)).mean(),
        }
