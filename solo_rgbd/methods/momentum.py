"""The method template, level 2 of 2: momentum copies, shuffle-BN and queues (MoCo, BYOL, MBCF).

On top of :class:`~solo_rgbd.methods.base.BaseMethod`, per stream ``s``:

- momentum copies ``encoders_k[s]`` and ``projectors_k[s]`` (theta_k, phi_k), moved by
  theta_k <- tau theta_k + (1 - tau) theta_q once per optimizer step over
  :attr:`momentum_pairs` (every copy made with :meth:`momentum_copy`), tau from
  ``method_kwargs.momentum`` (cosine from ``base_tau`` to ``final_tau``, or constant);
- :meth:`momentum_forward`: the key side of every stream at once, with MoCo's shuffle-BN when
  ``shuffle_bn`` (:meth:`key_forward` runs any function that way);
- queues of negatives, when the method makes ``self.queues`` (a ``ModuleDict`` of
  :class:`~solo_rgbd.nn.queue.KeyQueue`, persistent buffers saved in checkpoints):
  :meth:`negatives` and :meth:`exclusions` per queue, :meth:`enqueue` after the loss, with the
  keys of every rank.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

from solo_rgbd.methods.base import BaseMethod, StreamKwargs
from solo_rgbd.nn.backbone import Encoder
from solo_rgbd.nn.distributed import gather_keys
from solo_rgbd.nn.momentum import EMAUpdate, cosine_tau
from solo_rgbd.nn.momentum import momentum_copy as frozen_copy
from solo_rgbd.nn.shuffle_bn import shuffled_forward

Streams = dict[str, torch.Tensor]  # {stream: tensor}


@dataclass
class MomentumKwargs:
    """Key encoders: ``base_tau`` -> ``final_tau`` with a cosine schedule (or constant)."""

    base_tau: float = 0.99
    final_tau: float = 1.0
    schedule: str = "cosine"  # cosine | constant (constant uses base_tau, e.g. 0.999)


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


class MomentumMethod(BaseMethod):
    """Momentum copies of the encoders and projectors, shuffle-BN and queues (module doc)."""

    Kwargs = MomentumStreamKwargs

    @classmethod
    def check_kwargs(cls, kw: dict[str, Any]) -> None:
        super().check_kwargs(kw)
        m, req = kw["momentum"], cls.require
        for key in ("base_tau", "final_tau"):
            req(0 <= float(m[key]) <= 1, f"momentum.{key}", m[key], "must be in [0, 1]")
        req(
            float(m["base_tau"]) <= float(m["final_tau"]) or m["schedule"] == "constant",
            "momentum.final_tau",
            m["final_tau"],
            f"must be >= momentum.base_tau ({m['base_tau']}) for the cosine schedule",
        )
        schedules = ("cosine", "constant")
        req(
            m["schedule"] in schedules, "momentum.schedule", m["schedule"], "use cosine or constant"
        )
        if "queue_size" in kw:  # MoCoKwargs
            for key in ("queue_size", "proj_hidden_dim", "proj_output_dim", "shuffle_bn_groups"):
                req(int(kw[key]) >= 1, key, kw[key], "must be >= 1")

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self._pairs: list[tuple[nn.Module, nn.Module]] = []  # (online, copy), in order
        self.encoders_k = nn.ModuleDict(
            {s: self.momentum_copy(e) for s, e in self.encoders.items()}
        )
        self.projectors_k = nn.ModuleDict(
            {s: self.momentum_copy(p, self.make_momentum_projector(p)) for s, p in
             self.projectors.items()}
        )  # fmt: skip

    def make_momentum_projector(self, projector: nn.Module) -> nn.Module:
        """phi_k^s: a frozen copy of ``projector`` (a method may build its own twin)."""
        return frozen_copy(projector)

    def momentum_copy(self, module: nn.Module, copy: nn.Module | None = None) -> nn.Module:
        """The momentum copy of ``module`` (a frozen deep copy unless ``copy`` is given), moved
        with it by :attr:`momentum_pairs`."""
        copy = frozen_copy(module) if copy is None else copy
        self._pairs.append((module, copy))
        return copy

    @property
    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """The (online, momentum) modules the EMA moves this step: every copy made by
        :meth:`momentum_copy` (a method may leave some out, e.g. in a stage)."""
        return list(self._pairs)

    def state_roles(self) -> dict[str, list[str]]:
        names = {id(m): n for n, m in self.named_modules()}
        return {**super().state_roles(), "momentum": sorted(names[id(c)] for _, c in self._pairs)}

    # ----- the key side ---------------------------------------------------------------------
    @torch.no_grad()
    def key_forward(self, fn, *inputs: torch.Tensor):
        """``fn(*inputs)`` on the key side: with shuffle-BN when ``method_kwargs.shuffle_bn``
        (across ranks under DDP, else in ``shuffle_bn_groups`` groups on this device)."""
        if self.kwargs.get("shuffle_bn"):
            return shuffled_forward(fn, *inputs, groups=int(self.kwargs["shuffle_bn_groups"]))
        return fn(*inputs)

    @torch.no_grad()
    def momentum_forward(self, x: Streams) -> tuple[Streams, Streams]:
        """Eq. 2 for every stream at once, with the momentum copies (one shuffle-BN for all):
        the feature maps {s: (B, C, h, w)} and the keys {s: (B, D)}."""
        names = list(x)

        def run(*xs: torch.Tensor) -> tuple[Streams, Streams]:
            fmaps = {s: self.encoders_k[s](v) for s, v in zip(names, xs, strict=True)}
            return fmaps, {s: self.projectors_k[s](Encoder.pool(f)) for s, f in fmaps.items()}

        return self.key_forward(run, *(x[s] for s in names))

    @torch.no_grad()
    def embed_momentum(self, stream: str, x: torch.Tensor) -> torch.Tensor:
        """phi_k^s(pool(theta_k^s(x))) of one stream's view (B, D), without shuffle-BN."""
        return self.projectors_k[stream](Encoder.pool(self.encoders_k[stream](x)))

    # ----- the momentum update --------------------------------------------------------------
    def momentum_tau(self) -> float:
        m = self.kwargs["momentum"]
        if m["schedule"] == "constant":
            return float(m["base_tau"])
        total = self.schedule_horizon()["total_steps"]
        return cosine_tau(self.global_step, total, float(m["base_tau"]), float(m["final_tau"]))

    def after_optimizer_step(self) -> None:
        """theta_k <- tau theta_k + (1 - tau) theta_q per pair, once per optimizer step."""
        pairs = self.momentum_pairs
        if not pairs:
            return
        if "_ema" not in self.__dict__:
            self._ema = EMAUpdate()  # one fused lerp over every pair's parameters
        tau = self.momentum_tau()
        self._ema(pairs, tau)
        if self.should_log():
            self.log("momentum_tau", tau)

    # ----- queues ---------------------------------------------------------------------------
    def negatives(self) -> Streams:
        """A snapshot (K, D) of every queue, safe to use while the queues move on."""
        return {name: queue.negatives() for name, queue in self.queues.items()}

    def exclusions(self, ids: torch.Tensor) -> Mapping[str, torch.Tensor | None]:
        """Per queue (B, K) bool: the entries the loss leaves out of the negatives (the keys of
        each query's own sample, ``ids`` (B,), unless ``instance_aware_queue`` is off; a
        ``start_empty`` queue's unwritten slots); None when there are none."""
        aware = bool(self.kwargs.get("instance_aware_queue", True))
        return {n: q.left_out(ids, aware) for n, q in self.queues.items()}

    def enqueue(self, keys: Streams, ids: torch.Tensor) -> None:
        """After the loss: this step's keys {queue: (B, D)} and their sample ids, from every
        rank, enter the queues."""
        all_ids = gather_keys(ids)
        for name, k in keys.items():
            self.queues[name].enqueue(gather_keys(k), all_ids)

    def on_train_start(self) -> None:
        super().on_train_start()
        queues = getattr(self, "queues", None)
        if not queues or self.kwargs.get("instance_aware_queue", True):
            return
        size, pairs = int(self.kwargs["queue_size"]), _training_pairs(self.trainer)
        if pairs and size > pairs:
            rank_zero_warn(
                f"method_kwargs.queue_size={size} is larger than the {pairs} training pairs and "
                "method_kwargs.instance_aware_queue=false: every queue holds older keys of each "
                "query's own image as negatives; set instance_aware_queue=true or a smaller queue."
            )


def _training_pairs(trainer) -> int:
    """The number of training pairs, or 0 when the loader does not say."""
    try:
        return len(trainer.train_dataloader.dataset)
    except (AttributeError, TypeError):
        return 0
