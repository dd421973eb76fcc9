"""The per-stream template: every SSL method of the library is one subclass of it.

For every stream ``s`` (``rgb`` and ``depth``; one 4-channel ``rgbd`` stream for early fusion;
or one modality: :class:`~solo_rgbd.nn.streams.Streams`, from ``method_kwargs.rgbd_mode``):

- an encoder theta^s and a projector phi^s (:meth:`make_projector`; MoCo v2's MLP unless a
  method says otherwise), optionally a predictor (:meth:`make_predictor`, in its own parameter
  group, ``static_lr`` if :attr:`predictor_static_lr`);
- with ``uses_momentum``: their momentum copies theta_k^s, phi_k^s, moved once per optimizer
  step, with MoCo's shuffle-BN when ``shuffle_bn``;
- with ``uses_queue``: a queue of negatives (persistent buffers, saved in checkpoints), filled
  explicitly after the loss with the keys of every rank.

A method gives its loss as :meth:`stream_loss` (one term per stream, summed) or as a whole
:meth:`objective`, and may add modules of its own (:meth:`extra_modules`, e.g. MBCF's fusion
encoder). MBCF and the alignment baseline are in ``methods/mbcf.py`` and ``alignment.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

from solo_rgbd.losses.infonce import batch_top1_accuracy
from solo_rgbd.methods.base import (
    BaseMomentumMethod,
    MomentumKwargs,
    check_momentum,
    check_shuffle_bn,
)
from solo_rgbd.methods.optim import ParamGroup
from solo_rgbd.nn.backbone import Encoder
from solo_rgbd.nn.distributed import batch_offset, gather_keys, mean_over_ranks
from solo_rgbd.nn.heads import mocov2_projector
from solo_rgbd.nn.momentum import momentum_copy
from solo_rgbd.nn.queue import KeyQueue
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


@dataclass
class MoCoKwargs:
    """Momentum encoders and a queue per stream (two streams: rgb and depth)."""

    proj_hidden_dim: int = 2048  # MoCo v2 projector 2048-2048-128 for ResNet-50
    proj_output_dim: int = 128
    queue_size: int = 16384  # one queue of negatives per stream
    momentum: MomentumKwargs = field(default_factory=MomentumKwargs)
    shuffle_bn: bool = False  # MoCo's shuffle-BN for the key encoders (experiment=paper: on)
    shuffle_bn_groups: int = 2  # on one device: BN groups of the key batch (DDP: ranks)
    # drop queued keys of the query's own sample from its negatives (KeyQueue's ids); false
    # is MoCo and the paper literally (docs/paper.md)
    instance_aware_queue: bool = True


def grad_norm(module: nn.Module) -> torch.Tensor:
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.nn.utils.get_total_norm(grads, error_if_nonfinite=False)


class StreamMethod(BaseMomentumMethod):
    #: momentum copies of the encoders and projectors (BYOL, MoCo, DINO)
    uses_momentum: ClassVar[bool] = False
    #: a queue of negatives per stream (MoCo); needs ``queue_size`` in the kwargs
    uses_queue: ClassVar[bool] = False
    #: the predictors (:meth:`make_predictor`) keep their lr; the rest follow the schedule
    #: (SimSiam: "the predictor works better with a fixed lr")
    predictor_static_lr: ClassVar[bool] = False
    Kwargs = StreamKwargs

    @classmethod
    def check_kwargs(cls, kw: dict[str, Any]) -> None:
        if "rgbd_mode" in kw:
            mode = kw["rgbd_mode"]
            cls.require(mode in RGBD_MODES, "rgbd_mode", mode, f"use one of {RGBD_MODES}")
        if "queue_size" in kw:
            for key in ("queue_size", "proj_hidden_dim", "proj_output_dim"):
                cls.require(int(kw[key]) >= 1, key, kw[key], "must be >= 1")
            check_shuffle_bn(kw, cls.require)
        if "momentum" in kw:
            check_momentum(kw, cls.require)

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        kw = self.kwargs
        self.streams = Streams.of_mode(str(kw.get("rgbd_mode", "two_stream")))
        self.encoders = nn.ModuleDict(
            {s: self.make_encoder(c) for s, c in self.streams.channels.items()}
        )
        projectors, predictors = {}, {}
        for s, encoder in self.encoders.items():  # per stream: projector, then predictor
            projectors[s] = self.make_projector(encoder.num_features)
            predictors[s] = self.make_predictor(int(kw["proj_output_dim"]))
        self.projectors = nn.ModuleDict(projectors)
        self.predictors = nn.ModuleDict({s: p for s, p in predictors.items() if p is not None})
        if self.uses_momentum:
            self.encoders_k = nn.ModuleDict({s: momentum_copy(e) for s, e in self.encoders.items()})
            self.projectors_k = nn.ModuleDict(
                {s: self.make_momentum_projector(p) for s, p in self.projectors.items()}
            )
        if self.uses_queue:
            size, out = int(kw["queue_size"]), int(kw["proj_output_dim"])
            self.queues = nn.ModuleDict({s: KeyQueue(size, out) for s in self.streams})
        self._register_load_state_dict_pre_hook(_rename_legacy_keys)

    # ----- what a method may provide ------------------------------------------------------
    def make_projector(self, in_dim: int) -> nn.Module:
        """The projector phi^s on pooled features (B, in_dim) -> (B, proj_output_dim)."""
        kw = self.kwargs
        return mocov2_projector(in_dim, int(kw["proj_hidden_dim"]), int(kw["proj_output_dim"]))

    def make_predictor(self, dim: int) -> nn.Module | None:
        """A predictor on the ``dim``-wide projection (SimSiam, BYOL); None: no predictor."""
        return None

    def make_momentum_projector(self, projector: nn.Module) -> nn.Module:
        return momentum_copy(projector)

    def extra_modules(self) -> list[tuple[nn.Module, nn.Module | None]]:
        """(online, momentum-or-None) modules a method adds (e.g. MBCF's fusion encoder)."""
        return []

    def extra_momentum_active(self) -> bool:
        return True

    def stream_loss(
        self, stream: str, x1: torch.Tensor, x2: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One stream's loss on its two views (B, C, H, W), and extra values to log."""
        raise NotImplementedError

    # ----- modules and parameters ---------------------------------------------------------
    @property
    def learnable_params(self) -> list[ParamGroup]:
        groups = [
            ParamGroup(s, [*e.parameters(), *self.projectors[s].parameters()])
            for s, e in self.encoders.items()
        ]
        for s, predictor in self.predictors.items():
            static = bool(self.predictor_static_lr)
            groups.append(ParamGroup(f"{s}_predictor", [*predictor.parameters()], static_lr=static))
        extra = [p for online, _ in self.extra_modules() for p in online.parameters()]
        if extra:
            groups.append(ParamGroup("inter", extra))
        return groups

    @property
    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        if not self.uses_momentum:
            return []
        pairs = [(e, self.encoders_k[s]) for s, e in self.encoders.items()]
        pairs += [(p, self.projectors_k[s]) for s, p in self.projectors.items()]
        if self.extra_momentum_active():
            pairs += [(o, m) for o, m in self.extra_modules() if m is not None]
        return pairs

    def state_roles(self) -> dict[str, list[str]]:
        roles = super().state_roles()  # the momentum copies of extra modules in every stage
        names = {id(m): n for n, m in self.named_modules()}
        extra = [names[id(m)] for _, m in self.extra_modules() if m is not None]
        roles["momentum"] = sorted({*roles["momentum"], *extra})
        return roles

    def export_encoders(self) -> dict[str, Encoder]:
        return dict(self.encoders.items())

    # ----- forward passes -----------------------------------------------------------------
    def stream_inputs(self, rgb: torch.Tensor, depth: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.streams.inputs(rgb, depth)

    def embed(self, stream: str, x: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features (B, C) of one stream."""
        return Encoder.pool(self.encoders[stream](x))

    def project(self, stream: str, x: torch.Tensor) -> torch.Tensor:
        """The projector's output (B, D) of one stream's view."""
        return self.projectors[stream](self.embed(stream, x))

    def predict(self, stream: str, z: torch.Tensor) -> torch.Tensor:
        """The predictor (:meth:`make_predictor`) on a projection; the projection without one."""
        return self.predictors[stream](z) if stream in self.predictors else z

    @torch.no_grad()
    def embed_momentum(self, stream: str, x: torch.Tensor) -> torch.Tensor:
        """The momentum projection (B, D) of one stream's view (no shuffle-BN)."""
        return self.projectors_k[stream](Encoder.pool(self.encoders_k[stream](x)))

    def query(self, inputs: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
        """Eq. 1 per stream: {"fmap": {s: (B, C, h, w)}, "z": {s: (B, D)}}."""
        fmaps = {s: self.encoders[s](x) for s, x in inputs.items()}
        return {
            "fmap": fmaps,
            "z": {s: self.projectors[s](Encoder.pool(f)) for s, f in fmaps.items()},
        }

    @torch.no_grad()
    def keys(self, inputs: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
        """Eq. 2 per stream with the momentum copies (shuffle-BN over all streams at once)."""
        names = list(inputs)

        def run(*xs: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
            fmaps = {s: self.encoders_k[s](x) for s, x in zip(names, xs, strict=True)}
            z = {s: self.projectors_k[s](Encoder.pool(f)) for s, f in fmaps.items()}
            return {"fmap": fmaps, "z": z}

        return self.key_forward(run, *(inputs[s] for s in names))

    # ----- the queues ---------------------------------------------------------------------
    def negatives(self, stream: str) -> torch.Tensor:
        """A snapshot of ``stream``'s queue (K, D), safe to use while the queue moves on."""
        return self.queues[stream].negatives()

    def exclusion(self, queue: KeyQueue, ids: torch.Tensor) -> torch.Tensor | None:
        """(B, K) bool: ``queue``'s keys of each query's own sample (``ids`` (B,)), which the
        loss leaves out of the negatives; None when ``instance_aware_queue`` is off."""
        return queue.same_instance(ids) if self.kwargs["instance_aware_queue"] else None

    def enqueue(self, z_keys: dict[str, torch.Tensor], ids: torch.Tensor) -> None:
        """After the loss, explicitly: this step's keys and their sample ids (from every
        rank) enter the queues."""
        all_ids = gather_keys(ids)
        for s, z in z_keys.items():
            self.queues[s].enqueue(gather_keys(z), all_ids)

    @staticmethod
    def batch_accuracy(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Top-1 of each query's key among all keys of the global batch (chance 1 / batch):
        no stale keys to tell apart, and under shuffle-BN no BatchNorm leak. Logging steps."""
        acc = batch_top1_accuracy(q, gather_keys(k), batch_offset(q.shape[0]))
        return mean_over_ranks(acc)

    # ----- the step -----------------------------------------------------------------------
    def objective(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        (rgb1, depth1), (rgb2, depth2) = batch["views"]
        x1, x2 = self.stream_inputs(rgb1, depth1), self.stream_inputs(rgb2, depth2)
        loss = torch.zeros((), device=rgb1.device)
        logs: dict[str, Any] = {}
        for stream in self.streams:
            l_stream, extra = self.stream_loss(stream, x1[stream], x2[stream])
            loss = loss + l_stream
            logs[f"loss_{stream}"] = l_stream.detach()
            logs.update({f"{k}_{stream}": v for k, v in extra.items()})
        if self.should_log():
            self.log("loss", loss.detach(), prog_bar=True)
            self.log_dict(logs)
        return {"loss": loss, **{k: v for k, v in logs.items() if k.startswith("loss_")}}

    def on_train_start(self) -> None:
        super().on_train_start()
        if not self.uses_queue or self.kwargs["instance_aware_queue"]:
            return
        size, pairs = int(self.kwargs["queue_size"]), _training_pairs(self.trainer)
        if pairs and size > pairs:
            rank_zero_warn(
                f"method_kwargs.queue_size={size} is larger than the {pairs} training pairs and "
                "method_kwargs.instance_aware_queue=false: every queue holds older keys of each "
                "query's own image as negatives; set instance_aware_queue=true or a smaller queue."
            )

    def on_before_optimizer_step(self, optimizer) -> None:
        """Gradient norm reaching each encoder: is the weak modality learning?"""
        if self.should_log():
            values = {f"grad_norm_{s}_encoder": grad_norm(e) for s, e in self.encoders.items()}
            for i, (online, _) in enumerate(self.extra_modules()):
                values["grad_norm_inter" if i == 0 else f"grad_norm_inter{i}"] = grad_norm(online)
            self.log_dict(values)


class ProjectorCriterionMethod(StreamMethod):
    """Methods of the form criterion(projector(f(x1)), projector(f(x2))) per stream:
    SimCLR, Barlow Twins, VICReg. Subclasses set ``self.criterion`` and ``make_projector``."""

    criterion: nn.Module

    def stream_loss(self, stream, x1, x2):
        return self.criterion(self.project(stream, x1), self.project(stream, x2)), {}


def _rename_legacy_keys(state_dict: dict, prefix: str, *_args: Any) -> None:
    """Old checkpoints kept a stream's projector and predictor under ``heads.<s>.`` and the
    momentum projector under ``heads_k.<s>.``: rename them in place before loading."""
    for key in [k for k in state_dict if k.startswith(prefix + "heads")]:
        parts = key[len(prefix) :].split(".")
        if parts[0] == "heads_k":
            parts[0] = "projectors_k"
        elif len(parts) > 2 and parts[2] in ("projector", "predictor"):
            parts = [parts[2] + "s", parts[1], *parts[3:]]
        state_dict[prefix + ".".join(parts)] = state_dict.pop(key)


def _training_pairs(trainer) -> int:
    """The number of training pairs, or 0 when the loader does not say."""
    try:
        return len(trainer.train_dataloader.dataset)
    except (AttributeError, TypeError):
        return 0
