"""IntraCLM (Eq. 1-4) and the staged schedule, shared by MBCF and the alignment baseline.

:class:`TwoStreamIntraCLM` holds an RGB and a depth encoder with momentum copies, MoCo v2
projectors and a queue each, computes L_intra, and implements the schedules:

- ``two_stage``: stage 1 (IntraCLM alone, J = L_intra, lr ``stage1_lr``) for
  ``stage1_epochs``, then stage 2 (IntraCLM + the subclass's inter-modal term, lr
  ``stage2_lr``) for ``stage2_epochs``, each stage with its own cosine decay;
- ``one_stage``: both terms from the start for ``one_stage_epochs`` at ``one_stage_lr``;
- ``intra_only``: IntraCLM alone for stage1_epochs + stage2_epochs at ``stage1_lr`` (the
  paper's "Intra-modal" ablation with MBCF's budget).

The stage follows from the epoch and the lr from the global step, so both survive a resume.
Subclasses add their inter-modal modules (``inter_modules``) and ``training_step``.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

from solo_rgbd.errors import ConfigError
from solo_rgbd.losses.infonce import top1_accuracy
from solo_rgbd.losses.mbcf import intra_loss
from solo_rgbd.methods.base import (
    BaseMomentumMethod,
    check_momentum,
    check_shuffle_bn,
)
from solo_rgbd.nn.backbone import Encoder
from solo_rgbd.nn.distributed import gather_keys
from solo_rgbd.nn.heads import mocov2_projector
from solo_rgbd.nn.momentum import momentum_copy, warmup_cosine
from solo_rgbd.nn.queue import KeyQueue

SCHEDULES = ("two_stage", "one_stage", "intra_only")


def grad_norm(module: nn.Module) -> torch.Tensor:
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


class TwoStreamIntraCLM(BaseMomentumMethod):
    has_own_schedule = True
    defaults = {
        "proj_hidden_dim": 2048,
        "proj_output_dim": 128,
        "queue_size": 16384,
        "tau_intra": 0.1,
        "lambda_intra": 0.5,
        "lambda_inter": 0.5,
        "momentum": {"base_tau": 0.99, "final_tau": 1.0, "schedule": "cosine"},
        "shuffle_bn": False,
        "shuffle_bn_groups": 2,
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
        req(kw["schedule"] in SCHEDULES, "schedule", kw["schedule"], f"use one of {SCHEDULES}")
        for key in ("tau_intra", "stage1_lr", "stage2_lr", "one_stage_lr"):
            req(float(kw[key]) > 0, key, kw[key], "must be > 0")
        for key in ("lambda_intra", "lambda_inter"):
            req(float(kw[key]) >= 0, key, kw[key], "must be >= 0")
        req(int(kw["queue_size"]) >= 1, "queue_size", kw["queue_size"], "must be >= 1")
        for key in ("stage1_epochs", "stage2_epochs", "one_stage_epochs"):
            req(int(kw[key]) >= 0, key, kw[key], "must be >= 0")
        check_momentum(kw, req)
        check_shuffle_bn(kw, req)

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        if self.cfg.optimizer.get("lr") is not None:
            raise ConfigError(
                f"optimizer.lr={self.cfg.optimizer.lr} is not used by method '{self.method_name}', "
                "whose lr follows its schedule: set method_kwargs.stage1_lr and "
                "method_kwargs.stage2_lr (two_stage, intra_only) or method_kwargs.one_stage_lr "
                "(one_stage) instead, and drop optimizer.lr."
            )
        hidden, out = int(self.kwargs["proj_hidden_dim"]), int(self.kwargs["proj_output_dim"])
        # query side: theta_q and phi_q per modality (Eq. 1)
        self.rgb_encoder = self.make_encoder(3)
        self.depth_encoder = self.make_encoder(1)
        self.rgb_projector = mocov2_projector(self.rgb_encoder.num_features, hidden, out)
        self.depth_projector = mocov2_projector(self.depth_encoder.num_features, hidden, out)
        # key side: momentum copies theta_k and phi_k (Eq. 2)
        self.rgb_encoder_k = momentum_copy(self.rgb_encoder)
        self.depth_encoder_k = momentum_copy(self.depth_encoder)
        self.rgb_projector_k = momentum_copy(self.rgb_projector)
        self.depth_projector_k = momentum_copy(self.depth_projector)
        # one queue of negatives per modality (persistent buffers: saved in checkpoints)
        self.queue_rgb = KeyQueue(int(self.kwargs["queue_size"]), out)
        self.queue_depth = KeyQueue(int(self.kwargs["queue_size"]), out)

    # ----- declarations -------------------------------------------------------------------
    @property
    def has_unused_parameters(self) -> bool:  # the inter-modal modules idle outside stage 2
        return bool(self.inter_modules()) and self.schedule != "one_stage"

    def inter_modules(self) -> list[tuple[nn.Module, nn.Module | None]]:
        """(online, momentum-or-None) modules of the inter-modal term (stage 2 only)."""
        return []

    @property
    def learnable_params(self) -> list[dict[str, Any]]:
        groups = [
            {
                "name": "rgb",
                "params": [*self.rgb_encoder.parameters(), *self.rgb_projector.parameters()],
            },
            {
                "name": "depth",
                "params": [*self.depth_encoder.parameters(), *self.depth_projector.parameters()],
            },
        ]
        inter = [p for online, _ in self.inter_modules() for p in online.parameters()]
        if inter:
            groups.append({"name": "inter", "params": inter})
        return groups

    @property
    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        pairs = [
            (self.rgb_encoder, self.rgb_encoder_k),
            (self.depth_encoder, self.depth_encoder_k),
            (self.rgb_projector, self.rgb_projector_k),
            (self.depth_projector, self.depth_projector_k),
        ]
        if self.stage == 2:  # in stage 1 the inter-modal modules are untouched
            pairs += [(o, m) for o, m in self.inter_modules() if m is not None]
        return pairs

    def export_encoders(self) -> dict[str, Encoder]:
        return {"rgb": self.rgb_encoder, "depth": self.depth_encoder}

    # ----- schedule -----------------------------------------------------------------------
    @property
    def schedule(self) -> str:
        return str(self.kwargs["schedule"])

    def schedule_epochs(self) -> int:
        """The epochs the stage schedule spans: one_stage_epochs, or stage1 + stage2."""
        kw = self.kwargs
        if self.schedule == "one_stage":
            return int(kw["one_stage_epochs"])
        return int(kw["stage1_epochs"]) + int(kw["stage2_epochs"])

    def planned_epochs(self) -> int:
        """The schedule's epochs; ``trainer.max_epochs`` may only stop the run earlier.

        The lr and momentum schedules always span the stages, so a shortened run is the first
        epochs of the full one (and can be resumed into it).
        """
        total, cap = self.schedule_epochs(), self.cfg.trainer.get("max_epochs")
        if total < 1:
            raise ConfigError(
                f"method '{self.method_name}' has a {self.schedule} schedule of 0 epochs; set "
                "method_kwargs.stage1_epochs / stage2_epochs (or one_stage_epochs)."
            )
        if cap is None or int(cap) == total:
            return total
        kw = self.kwargs
        stages = (
            f"one_stage_epochs={kw['one_stage_epochs']}"
            if self.schedule == "one_stage"
            else f"stage1_epochs={kw['stage1_epochs']} + stage2_epochs={kw['stage2_epochs']}"
        )
        if int(cap) > total:
            raise ConfigError(
                f"trainer.max_epochs={cap} is longer than method '{self.method_name}''s "
                f"{self.schedule} schedule ({stages} = {total} epochs); set the stage epochs in "
                "method_kwargs instead (trainer.max_epochs only stops a staged run early)."
            )
        only_intra = self.schedule == "two_stage" and int(cap) <= int(kw["stage1_epochs"])
        rank_zero_warn(
            f"trainer.max_epochs={cap} stops method '{self.method_name}' after {cap} of its "
            f"{total} scheduled epochs ({stages})"
            + ("; stage 2 (InterCLM) is never reached" if only_intra else "")
            + ". lr and momentum follow the full schedule."
        )
        return int(cap)

    def stage_at(self, epoch: int) -> int:
        """1: IntraCLM only; 2: IntraCLM + the inter-modal term."""
        if self.schedule == "one_stage":
            return 2
        if self.schedule == "intra_only":
            return 1
        return 1 if epoch < int(self.kwargs["stage1_epochs"]) else 2

    @property
    def stage(self) -> int:
        return self.stage_at(self.current_epoch)

    @property
    def base_lr(self) -> float:
        kw = self.kwargs
        return float(kw["one_stage_lr"] if self.schedule == "one_stage" else kw["stage1_lr"])

    def lr_at(self, step: int) -> float:
        """Each stage: its own lr with its own cosine decay (warmup from optimizer config)."""
        kw, per_epoch = self.kwargs, self.steps_per_epoch()
        total = self.schedule_horizon()["total_steps"]
        warmup = int(float(self.cfg.optimizer.warmup_epochs) * per_epoch)
        kind = str(self.cfg.optimizer.scheduler)
        if self.schedule != "two_stage":
            return warmup_cosine(step, total, warmup, self.base_lr, kind)
        switch = int(kw["stage1_epochs"]) * per_epoch
        if step < switch:
            return warmup_cosine(step, switch, warmup, float(kw["stage1_lr"]), kind)
        return warmup_cosine(
            step - switch, max(1, total - switch), warmup, float(kw["stage2_lr"]), kind
        )

    def on_train_epoch_start(self) -> None:
        switch = int(self.kwargs["stage1_epochs"])
        if (
            self.schedule == "two_stage"
            and self.current_epoch == switch
            and self.trainer.is_global_zero
        ):
            print(
                f"{self.method_name}: stage 2 (IntraCLM + InterCLM) starts at epoch "
                f"{self.current_epoch}, step {self.global_step}",
                flush=True,
            )

    # ----- forward passes -----------------------------------------------------------------
    def forward(self, rgb: torch.Tensor, depth: torch.Tensor) -> dict[str, torch.Tensor]:
        """Query side (Eq. 1): feature maps and projections of both modalities."""
        fmap_rgb, fmap_depth = self.rgb_encoder(rgb), self.depth_encoder(depth)  # (B, C, h, w)
        return {
            "fmap_rgb": fmap_rgb,
            "fmap_depth": fmap_depth,
            "z_rgb": self.rgb_projector(Encoder.pool(fmap_rgb)),  # (B, D)
            "z_depth": self.depth_projector(Encoder.pool(fmap_depth)),
        }

    @torch.no_grad()
    def momentum_forward(self, rgb: torch.Tensor, depth: torch.Tensor) -> dict[str, torch.Tensor]:
        """Key side (Eq. 2) with the momentum encoders (shuffle-BN if ``shuffle_bn``)."""
        return self.key_forward(self._momentum_forward, rgb, depth)

    def _momentum_forward(self, rgb: torch.Tensor, depth: torch.Tensor) -> dict[str, torch.Tensor]:
        fmap_rgb, fmap_depth = self.rgb_encoder_k(rgb), self.depth_encoder_k(depth)
        return {
            "fmap_rgb": fmap_rgb,
            "fmap_depth": fmap_depth,
            "z_rgb": self.rgb_projector_k(Encoder.pool(fmap_rgb)),
            "z_depth": self.depth_projector_k(Encoder.pool(fmap_depth)),
        }

    def intra(self, q: dict, k: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """L_intra (Eq. 3-4) against snapshots of the queues."""
        return intra_loss(
            q["z_rgb"],
            k["z_rgb"],
            self.queue_rgb.negatives(),
            q["z_depth"],
            k["z_depth"],
            self.queue_depth.negatives(),
            tau=float(self.kwargs["tau_intra"]),
        )

    def enqueue_intra(self, k: dict) -> None:
        """After the loss, explicitly: this step's keys (from every rank) enter the queues."""
        self.queue_rgb.enqueue(gather_keys(k["z_rgb"]))
        self.queue_depth.enqueue(gather_keys(k["z_depth"]))

    def intra_diagnostics(self, loss, l_intra, parts) -> dict[str, Any]:
        return {
            "loss": loss.detach(),
            "loss_intra": l_intra.detach(),
            "loss_rgb": parts["loss_rgb"].detach(),
            "loss_depth": parts["loss_depth"].detach(),
            "acc_rgb": top1_accuracy(parts["logits_rgb"]),
            "acc_depth": top1_accuracy(parts["logits_depth"]),
            "stage": float(self.stage),
            "lr": self.lr_at(self.global_step),
        }

    def on_before_optimizer_step(self, optimizer) -> None:
        """Gradient norm reaching each encoder: is the weak modality learning?"""
        if self.should_log():
            values = {
                "grad_norm_rgb_encoder": grad_norm(self.rgb_encoder),
                "grad_norm_depth_encoder": grad_norm(self.depth_encoder),
            }
            for i, (online, _) in enumerate(self.inter_modules()):
                values["grad_norm_inter" if i == 0 else f"grad_norm_inter{i}"] = grad_norm(online)
            self.log_scalars(values)
