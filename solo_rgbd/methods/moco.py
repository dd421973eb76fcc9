"""MoCo per stream: the one two-encoder momentum template (IntraCLM, mocov2plus, alignment).

For every stream ``s`` (``rgb`` and ``depth``, or one ``rgbd`` stream for early fusion):

- the query side, an encoder theta_q^s and a MoCo v2 projector phi_q^s (Eq. 1);
- the key side, their momentum copies theta_k^s and phi_k^s (Eq. 2), moved once per optimizer
  step, with MoCo's shuffle-BN when ``shuffle_bn``;
- a queue of negatives per stream (persistent buffers, saved in checkpoints), filled explicitly
  after the loss with the keys of every rank.

``methods/intra.py`` adds the paper's stages and the inter-modal hook on top (MBCF and the
alignment baseline), ``methods/mocov2plus.py`` the plain per-stream loss; neither holds an
encoder, projector or queue of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
from solo_rgbd.nn.backbone import Encoder
from solo_rgbd.nn.distributed import batch_offset, gather_keys, mean_over_ranks
from solo_rgbd.nn.heads import mocov2_projector
from solo_rgbd.nn.momentum import momentum_copy
from solo_rgbd.nn.queue import KeyQueue
from solo_rgbd.nn.streams import Streams


@dataclass
class MoCoKwargs:
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


class MoCoStreams(BaseMomentumMethod):
    """Encoders, projectors, momentum copies and queues per stream, and their MoCo steps."""

    Kwargs = MoCoKwargs

    @classmethod
    def check_kwargs(cls, kw: dict[str, Any]) -> None:
        for key in ("queue_size", "proj_hidden_dim", "proj_output_dim"):
            cls.require(int(kw[key]) >= 1, key, kw[key], "must be >= 1")
        check_momentum(kw, cls.require)
        check_shuffle_bn(kw, cls.require)

    def streams(self) -> Streams:
        """The streams (:class:`~solo_rgbd.nn.streams.Streams`); two unless a subclass says
        otherwise."""
        return Streams.of_mode("two_stream")

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        kw = self.kwargs
        hidden, out, size = (
            int(kw["proj_hidden_dim"]),
            int(kw["proj_output_dim"]),
            int(kw["queue_size"]),
        )
        chans = self.streams().channels
        self.encoders = nn.ModuleDict({s: self.make_encoder(c) for s, c in chans.items()})
        self.projectors = nn.ModuleDict(
            {s: mocov2_projector(e.num_features, hidden, out) for s, e in self.encoders.items()}
        )
        self.encoders_k = nn.ModuleDict({s: momentum_copy(e) for s, e in self.encoders.items()})
        self.projectors_k = nn.ModuleDict({s: momentum_copy(p) for s, p in self.projectors.items()})
        self.queues = nn.ModuleDict({s: KeyQueue(size, out) for s in chans})

    # ----- declarations -------------------------------------------------------------------
    def extra_modules(self) -> list[tuple[nn.Module, nn.Module | None]]:
        """(online, momentum-or-None) modules a subclass adds (e.g. MBCF's fusion encoder)."""
        return []

    def extra_momentum_active(self) -> bool:
        return True

    def state_roles(self) -> dict[str, list[str]]:
        roles = super().state_roles()  # the momentum copies of extra modules in every stage
        names = {id(m): n for n, m in self.named_modules()}
        extra = [names[id(m)] for _, m in self.extra_modules() if m is not None]
        roles["momentum"] = sorted({*roles["momentum"], *extra})
        return roles

    @property
    def learnable_params(self) -> list[dict[str, Any]]:
        groups = [
            {"name": s, "params": [*e.parameters(), *self.projectors[s].parameters()]}
            for s, e in self.encoders.items()
        ]
        extra = [p for online, _ in self.extra_modules() for p in online.parameters()]
        if extra:
            groups.append({"name": "inter", "params": extra})
        return groups

    @property
    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        pairs = [(e, self.encoders_k[s]) for s, e in self.encoders.items()]
        pairs += [(p, self.projectors_k[s]) for s, p in self.projectors.items()]
        if self.extra_momentum_active():
            pairs += [(o, m) for o, m in self.extra_modules() if m is not None]
        return pairs

    def export_encoders(self) -> dict[str, Encoder]:
        return dict(self.encoders.items())

    # ----- the MoCo steps -----------------------------------------------------------------
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

    def on_train_start(self) -> None:
        super().on_train_start()
        size, pairs = int(self.kwargs["queue_size"]), _training_pairs(self.trainer)
        if not self.kwargs["instance_aware_queue"] and pairs and size > pairs:
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
            self.log_scalars(values)


def _training_pairs(trainer) -> int:
    """The number of training pairs, or 0 when the loader does not say."""
    try:
        return len(trainer.train_dataloader.dataset)
    except (AttributeError, TypeError):
        return 0
