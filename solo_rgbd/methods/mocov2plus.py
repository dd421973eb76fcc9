"""``method=mocov2plus``: MoCo v2 per stream (the paper's "Intra-modal" baseline, two_stream).

Each stream has an encoder, a MoCo v2 projector, momentum copies and its own queue; InfoNCE at
``temperature`` (0.1, the paper's tau_intra). ``symmetric=false`` (default) is MoCo v2 and the
paper's IntraCLM (view 1 queries, view 2 keys); ``symmetric=true`` adds the swapped term like
solo-learn's mocov2plus (twice the encoder passes).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from solo_rgbd.losses.infonce import infonce, top1_accuracy
from solo_rgbd.methods.base import check_shuffle_bn
from solo_rgbd.methods.registry import register_method
from solo_rgbd.methods.stream import StreamMethod
from solo_rgbd.nn.distributed import gather_keys
from solo_rgbd.nn.heads import mocov2_projector
from solo_rgbd.nn.queue import KeyQueue


@register_method("mocov2plus")
class MoCoV2Plus(StreamMethod):
    uses_momentum = True
    defaults = {
        **StreamMethod.stream_defaults,
        **StreamMethod.momentum_defaults,
        "proj_hidden_dim": 2048,
        "proj_output_dim": 128,
        "queue_size": 16384,
        "temperature": 0.1,
        "symmetric": False,
        "shuffle_bn": False,
        "shuffle_bn_groups": 2,
    }

    @classmethod
    def check_kwargs(cls, kw: dict[str, Any]) -> None:
        super().check_kwargs(kw)
        cls.require(float(kw["temperature"]) > 0, "temperature", kw["temperature"], "must be > 0")
        cls.require(int(kw["queue_size"]) >= 1, "queue_size", kw["queue_size"], "must be >= 1")
        check_shuffle_bn(kw, cls.require)

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        size, dim = int(self.kwargs["queue_size"]), int(self.kwargs["proj_output_dim"])
        self.queues = nn.ModuleDict({s: KeyQueue(size, dim) for s in self.stream_chans})

    def build_heads(self, in_dim: int) -> nn.ModuleDict:
        kw = self.kwargs
        return nn.ModuleDict(
            {
                "projector": mocov2_projector(
                    in_dim, int(kw["proj_hidden_dim"]), int(kw["proj_output_dim"])
                )
            }
        )

    def stream_loss(self, stream, x1, x2):
        tau, queue = float(self.kwargs["temperature"]), self.queues[stream]
        negatives = queue.negatives()
        q1 = self.heads[stream]["projector"](self.embed(stream, x1))
        k2 = self.key_forward(lambda x: self.embed_momentum(stream, x), x2)
        loss, logits = infonce(q1, k2, negatives, tau)
        keys = [k2]
        if self.kwargs["symmetric"]:
            q2 = self.heads[stream]["projector"](self.embed(stream, x2))
            k1 = self.key_forward(lambda x: self.embed_momentum(stream, x), x1)
            loss = (loss + infonce(q2, k1, negatives, tau)[0]) / 2
            keys.append(k1)
        for k in keys:  # after the loss, explicitly
            queue.enqueue(gather_keys(k))
        return loss, {"acc": top1_accuracy(logits)}
