"""MBCF: Modality-Balanced Contrastive Fusion (``method=mbcf``).

Two encoders (RGB, depth) with momentum copies and MoCo v2 projectors, trained by

- IntraCLM (Eq. 1-4): MoCo per modality, each with its own queue, InfoNCE at tau_intra = 0.1;
- InterCLM (Eq. 5-7, 9): a fusion encoder on the two encoders' last feature maps (channel
  attention per modality, the top ``mask_ratio`` RGB channels by attention zeroed per sample,
  concatenation, conv, pooling, projector), a momentum fusion encoder for keys on the momentum
  encoders' maps (no extra backbone pass), its own queue, InfoNCE at tau_inter = 0.04;
- J = lambda1 * L_intra + lambda2 * L_inter (Eq. 8), 0.5 each.

:class:`IntraCLM` is the per-stream template (:mod:`solo_rgbd.methods.stream`: encoders,
projectors, momentum copies, queues) with L_intra and the schedules, which
:mod:`solo_rgbd.methods.staged` computes from the kwargs. ``two_stage`` (the paper's best) trains
IntraCLM alone for ``stage1_epochs`` at ``stage1_lr`` (J = L_intra: plain MoCo per modality),
then both for ``stage2_epochs`` at ``stage2_lr``; before the switch the fusion encoders and the
fused queue are untouched. ``one_stage`` trains both from the start; ``intra_only`` never
switches (the "Intra-modal" ablation).

The MoCo loss is asymmetric (view 1 queries, view 2 keys) as in MoCo and the paper. The key
side can use MoCo's shuffle-BN (``shuffle_bn``, on in ``experiment=paper``). Under DDP the
runner turns on ``find_unused_parameters`` because the fusion encoder gets no gradient in
stage 1. The stage follows from the epoch and the lr from the global step, so both survive a
resume. See ``solo_rgbd/nn/fusion.py`` for the fusion encoder's choices where the paper is
open, and ``docs/paper.md`` for every setting of the paper preset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

from solo_rgbd.errors import ConfigError
from solo_rgbd.losses.infonce import top1_accuracy
from solo_rgbd.losses.mbcf import inter_loss, intra_loss, total_loss
from solo_rgbd.methods.registry import register_method
from solo_rgbd.methods.staged import SCHEDULES, StagedSchedule
from solo_rgbd.methods.stream import MoCoKwargs, StreamMethod
from solo_rgbd.nn.distributed import gather_keys
from solo_rgbd.nn.fusion import MASK_MODES, FusionEncoder, attention_entropy, random_channel_mask
from solo_rgbd.nn.momentum import momentum_copy
from solo_rgbd.nn.queue import KeyQueue
from solo_rgbd.nn.reliance import (
    batchnorm_stats_kept,
    concat_embed,
    mask_diagnostics,
    modality_reliance,
)
from solo_rgbd.utils.console import say


@dataclass
class IntraKwargs(MoCoKwargs):
    tau_intra: float = 0.1  # Eq. 3-4
    lambda_intra: float = 0.5  # Eq. 8
    lambda_inter: float = 0.5
    schedule: str = "two_stage"  # two_stage | one_stage | intra_only
    stage1_epochs: int = 200  # IntraCLM only, at lr stage1_lr
    stage2_epochs: int = 100  # IntraCLM + InterCLM, at lr stage2_lr
    stage1_lr: float = 0.03
    stage2_lr: float = 0.05
    one_stage_epochs: int = 150
    one_stage_lr: float = 0.07


class IntraCLM(StreamMethod):
    """Eq. 1-4 and the schedules; the inter-modal term comes from a subclass."""

    has_own_schedule = True
    uses_momentum = True
    uses_queue = True  # two streams (rgb, depth): no rgbd_mode in IntraKwargs
    Kwargs = IntraKwargs

    @classmethod
    def check_kwargs(cls, kw: dict[str, Any]) -> None:
        super().check_kwargs(kw)
        req = cls.require
        req(kw["schedule"] in SCHEDULES, "schedule", kw["schedule"], f"use one of {SCHEDULES}")
        for key in ("tau_intra", "stage1_lr", "stage2_lr", "one_stage_lr"):
            req(0 < float(kw[key]) < float("inf"), key, kw[key], "must be a finite number > 0")
        for key in ("lambda_intra", "lambda_inter"):
            req(float(kw[key]) >= 0, key, kw[key], "must be >= 0")
        for key in ("stage1_epochs", "stage2_epochs", "one_stage_epochs"):
            req(int(kw[key]) >= 0, key, kw[key], "must be >= 0")

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        if self.cfg.optimizer.get("lr") is not None:
            raise ConfigError(
                f"optimizer.lr={self.cfg.optimizer.lr} is not used by method '{self.method_name}', "
                "whose lr follows its schedule: set method_kwargs.stage1_lr and "
                "method_kwargs.stage2_lr (two_stage, intra_only) or method_kwargs.one_stage_lr "
                "(one_stage) instead, and drop optimizer.lr."
            )

    # ----- declarations -------------------------------------------------------------------
    @property
    def has_unused_parameters(self) -> bool:  # the inter-modal modules idle outside stage 2
        return bool(self.inter_modules()) and self.schedule != "one_stage"

    def inter_modules(self) -> list[tuple[nn.Module, nn.Module | None]]:
        """(online, momentum-or-None) modules of the inter-modal term (stage 2 only)."""
        return []

    def extra_modules(self) -> list[tuple[nn.Module, nn.Module | None]]:
        return self.inter_modules()

    def extra_momentum_active(self) -> bool:
        return self.stage == 2  # in stage 1 the inter-modal modules are untouched

    # ----- schedule -----------------------------------------------------------------------
    @property
    def schedule(self) -> str:
        return str(self.kwargs["schedule"])

    def schedule_epochs(self) -> int:
        """The epochs the stage schedule spans: one_stage_epochs, or stage1 + stage2."""
        return self.staged.epochs

    def planned_epochs(self) -> int:
        """The schedule's epochs; ``trainer.max_epochs`` may only stop the run earlier."""
        cap = self.cfg.trainer.get("max_epochs")
        epochs, warning = self.staged.epochs_to_run(
            None if cap is None else int(cap), self.method_name
        )
        if warning:
            rank_zero_warn(warning)
        return epochs

    @property
    def staged(self) -> StagedSchedule:
        """Stage, lr and epochs at any step (Lightning-free, :mod:`solo_rgbd.methods.staged`)."""
        opt = self.cfg.optimizer
        return StagedSchedule.from_kwargs(self.kwargs, float(opt.warmup_epochs), str(opt.scheduler))

    def stage_at(self, epoch: int) -> int:
        """1: IntraCLM only; 2: IntraCLM + the inter-modal term."""
        return self.staged.terms_at_epoch(epoch)

    @property
    def stage(self) -> int:
        return self.stage_at(self.current_epoch)

    @property
    def base_lr(self) -> float:
        return self.staged.base_lr

    def lr_at(self, step: int) -> float:
        """Each stage: its own lr with its own cosine decay (warmup from optimizer config)."""
        return self.staged.lr_at(step, self.steps_per_epoch())

    def on_train_epoch_start(self) -> None:
        if self.current_epoch in self.staged.switch_epochs():
            say(
                f"{self.method_name}: stage 2 (IntraCLM + InterCLM) starts at epoch "
                f"{self.current_epoch}, step {self.global_step}"
            )

    # ----- forward passes -----------------------------------------------------------------
    @staticmethod
    def _flat(out: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return {f"{kind}_{s}": t for kind, per in out.items() for s, t in per.items()}

    def forward(self, rgb: torch.Tensor, depth: torch.Tensor) -> dict[str, torch.Tensor]:
        """Query side (Eq. 1): fmap_rgb / fmap_depth (B, C, h, w), z_rgb / z_depth (B, D)."""
        return self._flat(self.query({"rgb": rgb, "depth": depth}))

    @torch.no_grad()
    def momentum_forward(self, rgb: torch.Tensor, depth: torch.Tensor) -> dict[str, torch.Tensor]:
        """Key side (Eq. 2) with the momentum encoders (shuffle-BN if ``shuffle_bn``)."""
        return self._flat(self.keys({"rgb": rgb, "depth": depth}))

    def intra(
        self, q: dict, k: dict, ids: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """L_intra (Eq. 3-4) against snapshots of the queues, without the queued keys of each
        query's own sample (``ids`` (B,), when ``instance_aware_queue``)."""
        return intra_loss(
            q["z_rgb"],
            k["z_rgb"],
            self.negatives("rgb"),
            q["z_depth"],
            k["z_depth"],
            self.negatives("depth"),
            tau=float(self.kwargs["tau_intra"]),
            exclude_rgb=self.exclusion(self.queues["rgb"], ids),
            exclude_depth=self.exclusion(self.queues["depth"], ids),
        )

    def enqueue_intra(self, k: dict, ids: torch.Tensor) -> None:
        """After the loss, explicitly: this step's keys (from every rank) enter the queues."""
        self.enqueue({"rgb": k["z_rgb"], "depth": k["z_depth"]}, ids)

    def embedding_reliance(self, q: dict, k: dict) -> dict[str, Any]:
        """Reliance of the two embeddings side by side (before a fusion is trained, and for
        rows that have none), so every row of a grid has the same columns."""
        keys = concat_embed(k["z_rgb"], k["z_depth"])
        values = modality_reliance(
            concat_embed, q["z_rgb"].detach(), q["z_depth"].detach(), keys,
            self.batch_accuracy, self.global_step,
        )  # fmt: skip
        return {**values, "reliance_on_fusion": 0.0}

    def intra_diagnostics(self, loss, l_intra, parts, q: dict, k: dict) -> dict[str, Any]:
        return {
            "loss": loss.detach(),
            "loss_intra": l_intra.detach(),
            "loss_rgb": parts["loss_rgb"].detach(),
            "loss_depth": parts["loss_depth"].detach(),
            "acc_rgb": top1_accuracy(parts["logits_rgb"]),
            "acc_depth": top1_accuracy(parts["logits_depth"]),
            "acc_batch_rgb": self.batch_accuracy(q["z_rgb"], k["z_rgb"]),
            "acc_batch_depth": self.batch_accuracy(q["z_depth"], k["z_depth"]),
            "stage": float(self.stage),
            "lr": self.lr_at(self.global_step),
        }


@dataclass
class FusionKwargs:
    mask_ratio: float = 0.5  # share of RGB channels zeroed (those with the highest attention)
    mask_mode: str = "topk"  # topk (the paper) | random | static_random | bottomk | none
    random_draw: str = "shared"  # random: query and key share one draw, or independent
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
        modes = ", ".join(MASK_MODES)
        req(fus["mask_mode"] in MASK_MODES, "fusion.mask_mode", fus["mask_mode"], f"use {modes}")
        draws = ("shared", "independent")
        req(fus["random_draw"] in draws, "fusion.random_draw", fus["random_draw"], str(draws))

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        kw, fus = self.kwargs, self.kwargs["fusion"]
        # fusion encoder f_Fq (Eq. 5, 9) and its momentum copy f_Fk (Eq. 6)
        self.fusion = FusionEncoder(
            self.encoders["rgb"].num_features,
            self.encoders["depth"].num_features,
            dim=int(fus["dim"]),
            proj_hidden_dim=int(kw["proj_hidden_dim"]),
            proj_output_dim=int(kw["proj_output_dim"]),
            mask_ratio=float(fus["mask_ratio"]),
            conv_kernel=int(fus["conv_kernel"]),
            attention_reduction=int(fus["attention_reduction"]),
            pool=str(fus["pool"]),
            mask_mode=str(fus["mask_mode"]),
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
            shared = self._shared_draw(q["fmap_rgb"])  # random mode: one draw for q and k
            fused_q, att = self.fusion(q["fmap_rgb"], q["fmap_depth"], keep=shared)
            fused_k, att_k = self._fused_keys(k, shared)
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
                values.update(mask_diagnostics(att["a_rgb"], att["logits_rgb"], att["keep"],
                                               att_k["keep"]))  # fmt: skip
                values["acc_batch_inter"] = self.batch_accuracy(fused_q, fused_k)
                values.update(self._fusion_reliance(q, fused_k, att["keep"]))
            else:  # no fusion trained yet: the two embeddings side by side
                values.update(self.embedding_reliance(q, k))
            self.log_dict(values)
            self.log_dict({k: values[k] for k in ("loss", "stage")}, prog_bar=True)
        terms = {"loss_intra": l_intra, "loss_inter": l_inter}  # l_inter: None in stage 1
        return {"loss": loss, **{k: v for k, v in terms.items() if v is not None}}

    def _shared_draw(self, fmap_rgb: torch.Tensor) -> torch.Tensor | None:
        """``random`` with ``random_draw=shared``: this step's keep mask (B, Cr), for both the
        query and the key fusion; None otherwise (each fusion masks by its own mode)."""
        fus = self.kwargs["fusion"]
        if fus["mask_mode"] != "random" or fus["random_draw"] != "shared":
            return None
        shape = (fmap_rgb.shape[0], fmap_rgb.shape[1])
        return random_channel_mask(shape, float(fus["mask_ratio"]), fmap_rgb.device)

    def _fused_keys(self, k: dict, shared: torch.Tensor | None):
        """Eq. 6: the momentum fusion encoder on the key maps (masked too with ``mask_keys``)."""
        mask_keys = bool(self.kwargs["fusion"]["mask_keys"])
        if shared is None:
            fn = lambda r, d: self.fusion_k(r, d, apply_mask=mask_keys)  # noqa: E731
            return self.key_forward(fn, k["fmap_rgb"], k["fmap_depth"])
        fn = lambda r, d, m: self.fusion_k(r, d, keep=m if mask_keys else torch.ones_like(m))  # noqa: E731
        return self.key_forward(fn, k["fmap_rgb"], k["fmap_depth"], shared)  # m follows a shuffle

    def _fusion_reliance(self, q: dict, fused_k: torch.Tensor, keep: torch.Tensor) -> dict:
        """Reliance of the fused query on each modality's maps (the step's own mask kept)."""

        def embed(r: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
            return self.fusion(r, d, keep=keep)[0]

        with batchnorm_stats_kept(self.fusion):
            values = modality_reliance(
                embed, q["fmap_rgb"].detach(), q["fmap_depth"].detach(), fused_k,
                self.batch_accuracy, self.global_step,
            )  # fmt: skip
        return {**values, "reliance_on_fusion": 1.0}

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
