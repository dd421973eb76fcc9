"""IntraCLM (Eq. 1-4) and the staged schedule, shared by MBCF and the alignment baseline.

:class:`IntraCLM` is MoCo per modality (:class:`~solo_rgbd.methods.moco.MoCoStreams`:
an RGB and a depth encoder with momentum copies, MoCo v2 projectors and a queue each), computes
L_intra, and implements the schedules:

- ``two_stage``: stage 1 (IntraCLM alone, J = L_intra, lr ``stage1_lr``) for
  ``stage1_epochs``, then stage 2 (IntraCLM + the subclass's inter-modal term, lr
  ``stage2_lr``) for ``stage2_epochs``, each stage with its own cosine decay;
- ``one_stage``: both terms from the start for ``one_stage_epochs`` at ``one_stage_lr``;
- ``intra_only``: IntraCLM alone for stage1_epochs + stage2_epochs at ``stage1_lr`` (the
  paper's "Intra-modal" ablation with MBCF's budget).

The stage follows from the epoch and the lr from the global step, so both survive a resume.
Subclasses add their inter-modal modules (``inter_modules``) and ``objective``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

from solo_rgbd.errors import ConfigError
from solo_rgbd.losses.infonce import top1_accuracy
from solo_rgbd.losses.mbcf import intra_loss
from solo_rgbd.methods.moco import MoCoKwargs, MoCoStreams
from solo_rgbd.methods.staged import SCHEDULES, StagedSchedule
from solo_rgbd.nn.backbone import Encoder


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


class IntraCLM(MoCoStreams):
    has_own_schedule = True
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

    # the per-modality MoCo parts live in MoCoStreams; these names read like the paper
    @property
    def rgb_encoder(self) -> Encoder:
        return self.encoders["rgb"]

    @property
    def depth_encoder(self) -> Encoder:
        return self.encoders["depth"]

    @property
    def queue_rgb(self) -> nn.Module:
        return self.queues["rgb"]

    @property
    def queue_depth(self) -> nn.Module:
        return self.queues["depth"]

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
        if self.current_epoch in self.staged.switch_epochs() and self.trainer.is_global_zero:
            print(
                f"{self.method_name}: stage 2 (IntraCLM + InterCLM) starts at epoch "
                f"{self.current_epoch}, step {self.global_step}",
                flush=True,
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
            exclude_rgb=self.exclusion(self.queue_rgb, ids),
            exclude_depth=self.exclusion(self.queue_depth, ids),
        )

    def enqueue_intra(self, k: dict, ids: torch.Tensor) -> None:
        """After the loss, explicitly: this step's keys (from every rank) enter the queues."""
        self.enqueue({"rgb": k["z_rgb"], "depth": k["z_depth"]}, ids)

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
