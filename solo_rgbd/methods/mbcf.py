"""MBCF: Modality-Balanced Contrastive Fusion (``method=mbcf``).

Two encoders (RGB, depth) with momentum copies and MoCo v2 projectors, trained by

- IntraCLM (Eq. 1-4): MoCo per modality, each with its own queue, InfoNCE at tau_intra = 0.1;
- InterCLM (Eq. 5-7, 9): a fusion encoder on the two encoders' last feature maps (channel
  attention per modality, the top ``mask_ratio`` RGB channels by attention zeroed per sample,
  concatenation, conv, pooling, projector), a momentum fusion encoder for keys on the momentum
  encoders' maps (no extra backbone pass), its own queue, InfoNCE at tau_inter = 0.04;
- J = lambda1 * L_intra + lambda2 * L_inter (Eq. 8), 0.5 each.

Schedules: ``two_stage`` (the paper's best) trains IntraCLM alone for ``stage1_epochs`` at
``stage1_lr`` (J = L_intra: plain MoCo per modality), then both for ``stage2_epochs`` at
``stage2_lr``, each stage with its own cosine decay; before the switch the fusion encoders and
the fused queue are untouched. ``one_stage`` trains both from the start. The stage follows from
the epoch and the lr from the global step, so both survive a resume.

The MoCo loss is asymmetric (view 1 queries, view 2 keys) as in MoCo and the paper. BatchNorm
is not shuffled across GPUs. With several GPUs use
``trainer.strategy=ddp_find_unused_parameters_true``: the fusion encoder gets no gradient in
stage 1. See ``solo_rgbd/nn/fusion.py`` for the fusion
encoder's choices where the paper is open.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_info

from solo_rgbd.losses.infonce import top1_accuracy
from solo_rgbd.losses.mbcf import inter_loss, intra_loss, total_loss
from solo_rgbd.methods.base import BaseMomentumMethod, warmup_cosine
from solo_rgbd.methods.registry import register_method
from solo_rgbd.nn.backbone import Encoder
from solo_rgbd.nn.distributed import gather_keys
from solo_rgbd.nn.fusion import FusionEncoder, attention_entropy
from solo_rgbd.nn.heads import mocov2_projector
from solo_rgbd.nn.momentum import momentum_copy
from solo_rgbd.nn.queue import KeyQueue


def _grad_norm(module: torch.nn.Module) -> torch.Tensor:
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


@register_method("mbcf")
class MBCF(BaseMomentumMethod):
    defaults = {
        "proj_hidden_dim": 2048,
        "proj_output_dim": 128,
        "queue_size": 16384,
        "tau_intra": 0.1,
        "tau_inter": 0.04,
        "lambda_intra": 0.5,
        "lambda_inter": 0.5,
        "momentum": {"base_tau": 0.99, "final_tau": 1.0, "schedule": "cosine"},
        "fusion": {
            "mask_ratio": 0.5,
            "mask_keys": True,
            "dim": 2048,
            "conv_kernel": 1,
            "attention_reduction": 16,
            "pool": "after",
        },
        "schedule": "two_stage",
        "stage1_epochs": 200,
        "stage2_epochs": 100,
        "stage1_lr": 0.03,
        "stage2_lr": 0.05,
        "one_stage_epochs": 150,
        "one_stage_lr": 0.07,
    }

    @classmethod
    def check_kwargs(cls, kw: dict[str, Any]) -> None:
        req = cls.require
        req(
            kw["schedule"] in ("two_stage", "one_stage"),
            "schedule",
            kw["schedule"],
            "use two_stage or one_stage",
        )
        for key in ("tau_intra", "tau_inter", "stage1_lr", "stage2_lr", "one_stage_lr"):
            req(float(kw[key]) > 0, key, kw[key], "must be > 0")
        for key in ("lambda_intra", "lambda_inter"):
            req(float(kw[key]) >= 0, key, kw[key], "must be >= 0")
        req(int(kw["queue_size"]) >= 1, "queue_size", kw["queue_size"], "must be >= 1")
        req(int(kw["stage1_epochs"]) >= 0, "stage1_epochs", kw["stage1_epochs"], "must be >= 0")
        req(int(kw["stage2_epochs"]) >= 0, "stage2_epochs", kw["stage2_epochs"], "must be >= 0")
        ratio = kw["fusion"]["mask_ratio"]
        req(0 <= float(ratio) < 1, "fusion.mask_ratio", ratio, "must be in [0, 1)")
        req(
            kw["fusion"]["pool"] in ("after", "before"),
            "fusion.pool",
            kw["fusion"]["pool"],
            "use after or before",
        )
        req(
            kw["fusion"]["conv_kernel"] in (1, 3),
            "fusion.conv_kernel",
            kw["fusion"]["conv_kernel"],
            "use 1 or 3",
        )
        m = kw["momentum"]
        req(0 <= float(m["base_tau"]) <= 1, "momentum.base_tau", m["base_tau"], "must be in [0, 1]")
        req(
            m["schedule"] in ("cosine", "constant"),
            "momentum.schedule",
            m["schedule"],
            "use cosine or constant",
        )

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        kw = self.kwargs
        hidden, out, fus = int(kw["proj_hidden_dim"]), int(kw["proj_output_dim"]), kw["fusion"]
        # query side: theta_q and phi_q per modality (Eq. 1), fusion encoder f_Fq (Eq. 5)
        self.rgb_encoder = self.make_encoder(3)
        self.depth_encoder = self.make_encoder(1)
        c_rgb, c_depth = self.rgb_encoder.num_features, self.depth_encoder.num_features
        self.rgb_projector = mocov2_projector(c_rgb, hidden, out)
        self.depth_projector = mocov2_projector(c_depth, hidden, out)
        self.fusion = FusionEncoder(
            c_rgb,
            c_depth,
            dim=int(fus["dim"]),
            proj_hidden_dim=hidden,
            proj_output_dim=out,
            mask_ratio=float(fus["mask_ratio"]),
            conv_kernel=int(fus["conv_kernel"]),
            attention_reduction=int(fus["attention_reduction"]),
            pool=str(fus["pool"]),
        )
        # key side: momentum copies theta_k, phi_k (Eq. 2) and f_Fk (Eq. 6)
        self.rgb_encoder_k = momentum_copy(self.rgb_encoder)
        self.depth_encoder_k = momentum_copy(self.depth_encoder)
        self.rgb_projector_k = momentum_copy(self.rgb_projector)
        self.depth_projector_k = momentum_copy(self.depth_projector)
        self.fusion_k = momentum_copy(self.fusion)
        # one queue of negatives per contrast (persistent buffers: saved in checkpoints)
        size = int(kw["queue_size"])
        self.queue_rgb = KeyQueue(size, out)
        self.queue_depth = KeyQueue(size, out)
        self.queue_fused = KeyQueue(size, out)

    # ----- declarations -------------------------------------------------------------------
    @property
    def learnable_params(self) -> list[dict[str, Any]]:
        return [
            {
                "name": "rgb",
                "params": [*self.rgb_encoder.parameters(), *self.rgb_projector.parameters()],
            },
            {
                "name": "depth",
                "params": [*self.depth_encoder.parameters(), *self.depth_projector.parameters()],
            },
            {"name": "fusion", "params": list(self.fusion.parameters())},
        ]

    @property
    def momentum_pairs(self) -> list[tuple[torch.nn.Module, torch.nn.Module]]:
        pairs = [
            (self.rgb_encoder, self.rgb_encoder_k),
            (self.depth_encoder, self.depth_encoder_k),
            (self.rgb_projector, self.rgb_projector_k),
            (self.depth_projector, self.depth_projector_k),
        ]
        if self.stage == 2:  # in stage 1 the fusion pair is untouched (and still identical)
            pairs.append((self.fusion, self.fusion_k))
        return pairs

    def export_encoders(self) -> dict[str, Encoder]:
        return {"rgb": self.rgb_encoder, "depth": self.depth_encoder}

    # ----- schedule -----------------------------------------------------------------------
    @property
    def two_stage(self) -> bool:
        return self.kwargs["schedule"] == "two_stage"

    def planned_epochs(self) -> int:
        if self.cfg.trainer.get("max_epochs") is not None:
            return int(self.cfg.trainer.max_epochs)
        kw = self.kwargs
        if self.two_stage:
            return int(kw["stage1_epochs"]) + int(kw["stage2_epochs"])
        return int(kw["one_stage_epochs"])

    def stage_at(self, epoch: int) -> int:
        """1: IntraCLM only; 2: IntraCLM + InterCLM."""
        if not self.two_stage:
            return 2
        return 1 if epoch < int(self.kwargs["stage1_epochs"]) else 2

    @property
    def stage(self) -> int:
        return self.stage_at(self.current_epoch)

    @property
    def base_lr(self) -> float:
        kw = self.kwargs
        return float(kw["stage1_lr"] if self.two_stage else kw["one_stage_lr"])

    def lr_at(self, step: int) -> float:
        """Each stage: its own lr with its own cosine decay (warmup from optimizer config)."""
        kw, per_epoch = self.kwargs, self.steps_per_epoch()
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = int(float(self.cfg.optimizer.warmup_epochs) * per_epoch)
        kind = str(self.cfg.optimizer.scheduler)
        if not self.two_stage:
            return warmup_cosine(step, total, warmup, float(kw["one_stage_lr"]), kind)
        switch = int(kw["stage1_epochs"]) * per_epoch
        if step < switch:
            return warmup_cosine(step, switch, warmup, float(kw["stage1_lr"]), kind)
        return warmup_cosine(
            step - switch, max(1, total - switch), warmup, float(kw["stage2_lr"]), kind
        )

    def on_train_epoch_start(self) -> None:
        if self.two_stage and self.current_epoch == int(self.kwargs["stage1_epochs"]):
            rank_zero_info(
                f"MBCF: stage 2 (IntraCLM + InterCLM) starts at epoch "
                f"{self.current_epoch}, step {self.global_step}"
            )

    # ----- forward passes -----------------------------------------------------------------
    def forward(self, rgb: torch.Tensor, depth: torch.Tensor) -> dict[str, torch.Tensor]:
        """Query side (Eq. 1): feature maps and projections of both modalities."""
        fmap_rgb, fmap_depth = self.rgb_encoder(rgb), self.depth_encoder(depth)  # (B, C, h, w)
        return {
            "fmap_rgb": fmap_rgb,
            "fmap_depth": fmap_depth,
            "z_rgb": self.rgb_projector(Encoder.pool(fmap_rgb)),  # (B, 128)
            "z_depth": self.depth_projector(Encoder.pool(fmap_depth)),
        }

    @torch.no_grad()
    def momentum_forward(self, rgb: torch.Tensor, depth: torch.Tensor) -> dict[str, torch.Tensor]:
        """Key side (Eq. 2) with the momentum encoders."""
        fmap_rgb, fmap_depth = self.rgb_encoder_k(rgb), self.depth_encoder_k(depth)
        return {
            "fmap_rgb": fmap_rgb,
            "fmap_depth": fmap_depth,
            "z_rgb": self.rgb_projector_k(Encoder.pool(fmap_rgb)),
            "z_depth": self.depth_projector_k(Encoder.pool(fmap_depth)),
        }

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        kw = self.kwargs
        (rgb_q, depth_q), (rgb_k, depth_k) = batch["views"]
        q = self(rgb_q, depth_q)
        k = self.momentum_forward(rgb_k, depth_k)
        # IntraCLM, Eq. 3-4
        l_intra, intra = intra_loss(
            q["z_rgb"],
            k["z_rgb"],
            self.queue_rgb.negatives(),
            q["z_depth"],
            k["z_depth"],
            self.queue_depth.negatives(),
            tau=float(kw["tau_intra"]),
        )
        l_inter, fused_k, logits_f, att = None, None, None, None
        if self.stage == 2:
            # InterCLM: Eq. 5 and 9 (query), Eq. 6 (key), Eq. 7 (loss)
            fused_q, att = self.fusion(q["fmap_rgb"], q["fmap_depth"])
            with torch.no_grad():
                fused_k, _ = self.fusion_k(
                    k["fmap_rgb"], k["fmap_depth"], apply_mask=bool(kw["fusion"]["mask_keys"])
                )
            l_inter, logits_f = inter_loss(
                fused_q, fused_k, self.queue_fused.negatives(), tau=float(kw["tau_inter"])
            )
        loss = total_loss(l_intra, l_inter, float(kw["lambda_intra"]), float(kw["lambda_inter"]))

        # after the loss, explicitly: this step's keys (from every rank) enter the queues
        self.queue_rgb.enqueue(gather_keys(k["z_rgb"]))
        self.queue_depth.enqueue(gather_keys(k["z_depth"]))
        if fused_k is not None:
            self.queue_fused.enqueue(gather_keys(fused_k))

        if self.should_log():
            self._log_diagnostics(loss, l_intra, l_inter, intra, logits_f, att)
        return loss

    # ----- modality-balance diagnostics (at intervals only) -------------------------------
    def _log_diagnostics(self, loss, l_intra, l_inter, intra, logits_f, att) -> None:
        values = {
            "loss": loss.detach(),
            "loss_intra": l_intra.detach(),
            "loss_rgb": intra["loss_rgb"].detach(),
            "loss_depth": intra["loss_depth"].detach(),
            "acc_rgb": top1_accuracy(intra["logits_rgb"]),
            "acc_depth": top1_accuracy(intra["logits_depth"]),
            "stage": float(self.stage),
            "lr": self.lr_at(self.global_step),
        }
        if l_inter is not None:
            keep = att["keep"]
            values.update(
                {
                    "loss_inter": l_inter.detach(),
                    "acc_inter": top1_accuracy(logits_f),
                    "attention_entropy_rgb": attention_entropy(att["a_rgb"].detach()),
                    "attention_entropy_depth": attention_entropy(att["a_depth"].detach()),
                    "rgb_masked_share": 1.0 - keep.mean(),
                    "rgb_masked_attention_mass": (
                        (att["a_rgb"] * (1 - keep)).sum(1) / att["a_rgb"].sum(1)
                    )
                    .mean()
                    .detach(),
                }
            )
        self.log_scalars(values, prog_bar=("loss", "stage"))

    def on_before_optimizer_step(self, optimizer) -> None:
        """Gradient norm reaching each encoder: is the weak modality learning?"""
        if self.should_log():
            self.log_scalars(
                {
                    "grad_norm_rgb_encoder": _grad_norm(self.rgb_encoder),
                    "grad_norm_depth_encoder": _grad_norm(self.depth_encoder),
                    "grad_norm_fusion": _grad_norm(self.fusion),
                }
            )
