"""MBCF: Modality-Balanced Contrastive Fusion (``method=mbcf``), top to bottom in the paper's order.

    q^s = phi_q^s(theta_q^s(I^s)),  k^s = phi_k^s(theta_k^s(I^s)),  s in {rgb, depth}   (Eq. 1-2)
    L_intra = sum_s InfoNCE(q^s, k^s_+, queue^s; tau_intra = 0.1)                     (Eq. 3-4)
    q^F = f_Fq(F^r (x) mask(a^r)  (+)  F^d (x) a^d)                                   (Eq. 5, 9)
    k^F = f_Fk(...) on the momentum maps, f_Fk a momentum copy of f_Fq                  (Eq. 6)
    L_inter = InfoNCE(q^F, k^F_+, queue^F; tau_inter = 0.04)                             (Eq. 7)
    J = 0.5 L_intra + 0.5 L_inter                                                        (Eq. 8)

The template (``methods/base.py``, ``methods/momentum.py``; docs/methods.md) builds theta^s,
phi^s and their momentum copies, sets each step's lr and moves the copies after it; the fusion
encoder and its mask are ``nn/fusion.py``; the losses ``losses/mbcf.py``; what is logged
besides the loss ``methods/diagnostics.py``.

Schedules (``schedule``): ``two_stage`` (the paper's best) trains IntraCLM alone for
``stage1_epochs`` at ``stage1_lr`` (J = L_intra: plain MoCo per modality), then both for
``stage2_epochs`` at ``stage2_lr``; before the switch the fusion encoders and the fused queue
are untouched. ``one_stage`` trains both from the start; ``intra_only`` never switches (the
"Intra-modal" ablation). The stage follows from the epoch and the lr from the global step, so
both survive a resume. The loss is asymmetric (view 1 queries, view 2 keys) as in MoCo; the
key side can use shuffle-BN (``shuffle_bn``, on in ``experiment=paper``). docs/paper.md lists
every setting of the paper preset and where the paper is open.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from solo_rgbd.losses.mbcf import inter_loss, intra_loss, total_loss
from solo_rgbd.methods.diagnostics import contrast_row, embedding_reliance, fusion_row
from solo_rgbd.methods.momentum import MoCoKwargs, MomentumMethod
from solo_rgbd.methods.optim import ParamGroup
from solo_rgbd.methods.registry import register_method
from solo_rgbd.methods.staged import SCHEDULES
from solo_rgbd.nn.backbone import Encoder
from solo_rgbd.nn.balance import BALANCE_MODES, DROPPED, Balancer
from solo_rgbd.nn.distributed import gather_keys
from solo_rgbd.nn.fusion import MASK_MODES, FusionEncoder, random_channel_mask
from solo_rgbd.nn.queue import KeyQueue
from solo_rgbd.nn.reliance import batchnorm_stats_kept
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
class BalanceKwargs:  # encoder-level balancing, not in the paper (nn/balance.py)
    mode: str = "none"  # none | ogm (OGM-GE) | modality_dropout
    alpha: float = 0.5  # ogm: the dominant modality's coefficient 1 - tanh(alpha (ratio - 1))
    noise: float = 0.0  # ogm: GE, Gaussian noise of std noise * std(grad) on its gradient
    p: float = 0.5  # modality_dropout: share of samples whose one modality is zeroed
    drop: str = "both"  # modality_dropout: which modality those samples lose: both | rgb | depth


@dataclass
class MBCFKwargs(IntraKwargs):
    tau_inter: float = 0.04  # Eq. 7
    fusion: FusionKwargs = field(default_factory=FusionKwargs)
    balance: BalanceKwargs = field(default_factory=BalanceKwargs)


def check_intra(kw: dict[str, Any], req) -> None:
    """The IntraCLM settings (:class:`IntraKwargs`), shared with the alignment baseline."""
    req(kw["schedule"] in SCHEDULES, "schedule", kw["schedule"], f"use one of {SCHEDULES}")
    for key in ("tau_intra", "stage1_lr", "stage2_lr", "one_stage_lr"):
        req(0 < float(kw[key]) < float("inf"), key, kw[key], "must be a finite number > 0")
    for key in ("lambda_intra", "lambda_inter"):
        req(float(kw[key]) >= 0, key, kw[key], "must be >= 0")
    for key in ("stage1_epochs", "stage2_epochs", "one_stage_epochs"):
        req(int(kw[key]) >= 0, key, kw[key], "must be >= 0")


def idle_settings(kw: dict[str, Any]) -> list[str]:
    """Fusion settings that change nothing with the rest, one line each (only values that
    differ from their defaults are named: a default is no choice)."""
    fus, default = kw["fusion"], FusionKwargs()
    mode, ratio = fus["mask_mode"], float(fus["mask_ratio"])
    notes = []
    if kw["schedule"] == "intra_only" and (mode, ratio) != (default.mask_mode, default.mask_ratio):
        notes.append("fusion.mask_* do nothing with schedule=intra_only: no fusion is trained")
    elif mode == "none" and ratio != default.mask_ratio:
        notes.append(f"fusion.mask_ratio={ratio:g} does nothing with fusion.mask_mode=none")
    elif mode != "none" and ratio == 0:
        notes.append(f"fusion.mask_ratio=0 masks nothing: fusion.mask_mode={mode} does nothing")
    if mode != "random" and fus["random_draw"] != default.random_draw:
        notes.append(f"fusion.random_draw={fus['random_draw']} does nothing with mask_mode={mode}")
    return [f"note: {n}." for n in notes]


@register_method("mbcf")
class MBCF(MomentumMethod):
    Kwargs = MBCFKwargs
    has_own_schedule = True

    @classmethod
    def check_kwargs(cls, kw: dict[str, Any]) -> None:
        super().check_kwargs(kw)
        req, fus = cls.require, kw["fusion"]
        check_intra(kw, req)
        req(float(kw["tau_inter"]) > 0, "tau_inter", kw["tau_inter"], "must be > 0")
        ratio = float(fus["mask_ratio"])
        req(0 <= ratio < 1, "fusion.mask_ratio", fus["mask_ratio"], "must be in [0, 1)")
        req(fus["pool"] in ("after", "before"), "fusion.pool", fus["pool"], "use after or before")
        req(fus["conv_kernel"] in (1, 3), "fusion.conv_kernel", fus["conv_kernel"], "use 1 or 3")
        modes = ", ".join(MASK_MODES)
        req(fus["mask_mode"] in MASK_MODES, "fusion.mask_mode", fus["mask_mode"], f"use {modes}")
        draws = ("shared", "independent")
        req(fus["random_draw"] in draws, "fusion.random_draw", fus["random_draw"], str(draws))
        bal = kw["balance"]
        req(bal["mode"] in BALANCE_MODES, "balance.mode", bal["mode"], f"use {BALANCE_MODES}")
        req(float(bal["alpha"]) >= 0, "balance.alpha", bal["alpha"], "must be >= 0")
        req(float(bal["noise"]) >= 0, "balance.noise", bal["noise"], "must be >= 0")
        req(0 <= float(bal["p"]) <= 1, "balance.p", bal["p"], "must be in [0, 1]")
        req(bal["drop"] in DROPPED, "balance.drop", bal["drop"], f"use one of {DROPPED}")

    def __init__(self, cfg) -> None:
        # Eq. 1-2: per stream the encoder theta_q^s, the projector phi_q^s and their momentum
        # copies theta_k^s, phi_k^s (the template builds them)
        super().__init__(cfg)
        kw, fus = self.kwargs, self.kwargs["fusion"]
        size, dim = int(kw["queue_size"]), int(kw["proj_output_dim"])
        self.queues = nn.ModuleDict({s: KeyQueue(size, dim) for s in self.streams})  # Eq. 3
        staged = self.use_stages()  # stage, epochs and lr of each step (methods/staged.py)
        self.has_unused_parameters = staged.kind != "one_stage"  # the fusion idles in stage 1
        # Eq. 5, 9: the fusion encoder f_Fq with its attentive mask; Eq. 6: its momentum copy
        self.fusion = FusionEncoder(
            self.encoders["rgb"].num_features,
            self.encoders["depth"].num_features,
            dim=int(fus["dim"]),
            proj_hidden_dim=int(kw["proj_hidden_dim"]),
            proj_output_dim=dim,
            mask_ratio=float(fus["mask_ratio"]),
            conv_kernel=int(fus["conv_kernel"]),
            attention_reduction=int(fus["attention_reduction"]),
            pool=str(fus["pool"]),
            mask_mode=str(fus["mask_mode"]),
        )
        self.fusion_k = self.momentum_copy(self.fusion)
        bal = kw["balance"]  # none, OGM-GE or modality dropout on the fusion's inputs
        self.balance = Balancer(
            str(bal["mode"]), float(bal["alpha"]), float(bal["noise"]), float(bal["p"]),
            str(bal["drop"]), tau=float(kw["tau_inter"]),
        )  # fmt: skip
        # Eq. 7's negatives; its slots start empty: random placeholders would be a shortcut
        self.queue_fused = KeyQueue(size, dim, start_empty=True)
        for note in idle_settings(kw):
            say(note, err=True)

    @property
    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """The encoders and projectors always; the fusion encoder once it trains (stage 2)."""
        pairs = super().momentum_pairs
        return pairs if self.stage == 2 else [(o, m) for o, m in pairs if o is not self.fusion]

    @property
    def learnable_params(self) -> list[ParamGroup]:
        return [*super().learnable_params, ParamGroup("inter", [*self.fusion.parameters()])]

    def diagnosed_modules(self) -> dict[str, nn.Module]:
        return {**super().diagnosed_modules(), "inter": self.fusion}

    def objective(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        kw, fus = self.kwargs, self.kwargs["fusion"]
        (rgb_q, depth_q), (rgb_k, depth_k) = batch["views"]  # two augmented views (B, C, H, W)
        ids = batch["index"]  # (B,) each pair's sample: a queue skips a query's own keys

        # Eq. 1: queries. f_q {s: (B, C, h, w)} feature maps, q {s: (B, D)} projections
        f_q = {s: self.encoders[s](x) for s, x in self.streams.inputs(rgb_q, depth_q).items()}
        q = {s: self.projectors[s](Encoder.pool(f)) for s, f in f_q.items()}
        # Eq. 2: keys from the momentum encoders, no gradient (shuffle-BN if shuffle_bn)
        f_k, k = self.momentum_forward(self.streams.inputs(rgb_k, depth_k))

        # Eq. 3-4: IntraCLM, each modality against its own queue (K, D); logits (B, 1 + K)
        negatives, exclude = self.negatives(), self.exclusions(ids)
        tau_intra = float(kw["tau_intra"])
        l_intra, l_streams, logits = intra_loss(q, k, negatives, tau_intra, exclude)

        l_inter = None
        if self.stage == 2:  # InterCLM
            keep = self.random_keep(f_q["rgb"])  # random mask: the query's draw, or None
            shared = keep if fus["random_draw"] == "shared" else None
            # Eq. 6: k^F (B, D) from the momentum maps, masked too unless mask_keys=false
            k_f, att_k = self.fused_keys(f_k, shared)
            # balancing (balance.mode, not in the paper): the fusion's inputs as they are, or
            # with their gradient to the encoders scaled (ogm), or some zeroed
            r, d, balance = self.balanced_inputs(f_q, k_f, keep)
            # Eq. 5, 9: q^F (B, D), the top mask_ratio RGB channels by attention zeroed
            q_f, att = self.fusion(r, d, keep=keep)
            # Eq. 7: against the fused queue (K, D)
            drop = self.queue_fused.left_out(ids, bool(kw["instance_aware_queue"]))
            tau_inter = float(kw["tau_inter"])
            l_inter, logits_f = inter_loss(q_f, k_f, self.queue_fused.negatives(), tau_inter, drop)

        # Eq. 8 (stage 1 of two_stage: J = L_intra)
        lam_intra, lam_inter = float(kw["lambda_intra"]), float(kw["lambda_inter"])
        loss = total_loss(l_intra, l_inter, lam_intra, lam_inter)

        # after the loss, explicitly: this step's keys (from every rank) enter the queues
        self.enqueue(k, ids)
        if l_inter is not None:
            self.queue_fused.enqueue(gather_keys(k_f), gather_keys(ids))

        if self.should_log():  # diagnostics, on logging steps only
            step = self.global_step
            row = {
                "loss": loss.detach(),
                "loss_intra": l_intra.detach(),
                "stage": float(self.stage),
                "lr": self.lr_at(step),
                **contrast_row(l_streams, logits, q, k),
            }
            if l_inter is None:  # no fusion trained yet: the two embeddings side by side
                row.update(embedding_reliance(q, k, step))
            else:
                row["loss_inter"] = l_inter.detach()
                row.update(balance)
                row.update(fusion_row(self.fusion, f_q, q_f, k_f, logits_f, att, att_k, step))
            self.log_dict(row)
            self.log_dict({name: row[name] for name in ("loss", "stage")}, prog_bar=True)
        terms = {"loss_intra": l_intra, "loss_inter": l_inter}  # l_inter: None in stage 1
        return {"loss": loss, **{n: t for n, t in terms.items() if t is not None}}

    def random_keep(self, f_rgb: torch.Tensor) -> torch.Tensor | None:
        """``mask_mode=random``: the query's keep mask (B, Cr), drawn here; otherwise None."""
        fus = self.kwargs["fusion"]
        if fus["mask_mode"] != "random":
            return None
        return random_channel_mask(f_rgb.shape[:2], float(fus["mask_ratio"]), f_rgb.device)

    def balanced_inputs(self, f_q: dict[str, torch.Tensor], k_f: torch.Tensor, keep):
        """The fusion's inputs (B, C, h, w) after ``balance.mode`` (nn/balance.py), and what
        it logs. OGM's extra fusion forwards leave the fusion's BatchNorm statistics alone."""

        def embed(r: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
            return self.fusion(r, d, keep=keep)[0]

        probing = batchnorm_stats_kept(self.fusion) if self.balance.probes else nullcontext()
        with probing:
            return self.balance(embed, f_q["rgb"], f_q["depth"], k_f)

    def fused_keys(self, f_k: dict[str, torch.Tensor], shared: torch.Tensor | None):
        """Eq. 6: the momentum fusion encoder on the key maps, masked like the query
        (``shared``: the query's random draw, shuffled with the batch under shuffle-BN) unless
        ``mask_keys`` is off. Returns k^F (B, D) and its attention details."""
        mask_keys = bool(self.kwargs["fusion"]["mask_keys"])
        if shared is None:
            fn = lambda r, d: self.fusion_k(r, d, apply_mask=mask_keys)  # noqa: E731
            return self.key_forward(fn, f_k["rgb"], f_k["depth"])
        fn = lambda r, d, m: self.fusion_k(r, d, keep=m if mask_keys else torch.ones_like(m))  # noqa: E731
        return self.key_forward(fn, f_k["rgb"], f_k["depth"], shared)
