"""``method=mocov2plus``: MoCo v2 per stream (the paper's "Intra-modal" baseline, two_stream).

The per-stream template (:class:`~solo_rgbd.methods.stream.StreamMethod`) with momentum
copies and queues, the same parts as IntraCLM's; here each stream's InfoNCE at
``temperature`` (0.1, the paper's tau_intra) is summed. ``rgbd_mode=early_fusion`` runs one
stream on 4-channel RGB-D, ``rgb_only`` / ``depth_only`` one modality. ``symmetric=false``
(default) is MoCo v2 and the paper's IntraCLM (view 1 queries, view 2 keys); ``symmetric=true``
adds the swapped term like solo-learn's mocov2plus (twice the encoder passes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from solo_rgbd.losses.infonce import infonce, top1_accuracy
from solo_rgbd.methods.registry import register_method
from solo_rgbd.methods.stream import MoCoKwargs, StreamMethod


@dataclass
class MoCoV2PlusKwargs(MoCoKwargs):
    rgbd_mode: str = "two_stream"  # two_stream | early_fusion | rgb_only | depth_only
    temperature: float = 0.1
    symmetric: bool = False  # true: also the swapped term (solo-learn's mocov2plus)


@register_method("mocov2plus")
class MoCoV2Plus(StreamMethod):
    Kwargs = MoCoV2PlusKwargs
    uses_momentum = True
    uses_queue = True

    @classmethod
    def check_kwargs(cls, kw: dict[str, Any]) -> None:
        super().check_kwargs(kw)
        cls.require(float(kw["temperature"]) > 0, "temperature", kw["temperature"], "must be > 0")

    def objective(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        (rgb1, depth1), (rgb2, depth2) = batch["views"]
        ids = batch["index"]  # (B,): the queues skip a query's own keys
        x1, x2 = self.stream_inputs(rgb1, depth1), self.stream_inputs(rgb2, depth2)
        tau, symmetric = float(self.kwargs["temperature"]), bool(self.kwargs["symmetric"])
        q1, k2 = self.query(x1)["z"], self.keys(x2)["z"]
        if symmetric:
            q2, k1 = self.query(x2)["z"], self.keys(x1)["z"]
        loss = torch.zeros((), device=rgb1.device)
        logs: dict[str, Any] = {}
        log_now = self.should_log()
        for s in self.streams:
            negatives, exclude = self.negatives(s), self.exclusion(self.queues[s], ids)
            l_s, logits = infonce(q1[s], k2[s], negatives, tau, exclude)
            if symmetric:
                l_s = (l_s + infonce(q2[s], k1[s], negatives, tau, exclude)[0]) / 2
            loss = loss + l_s
            logs[f"loss_{s}"], logs[f"acc_{s}"] = l_s.detach(), top1_accuracy(logits)
            if log_now:
                logs[f"acc_batch_{s}"] = self.batch_accuracy(q1[s], k2[s])
        self.enqueue(k2, ids)  # after the loss, explicitly
        if symmetric:
            self.enqueue(k1, ids)
        if log_now:
            self.log("loss", loss.detach(), prog_bar=True)
            self.log_dict(logs)
        return {"loss": loss, **{k: v for k, v in logs.items() if k.startswith("loss_")}}
