"""What a method logs besides its loss, on logging steps only: accuracies, modality reliance,
the mask's statistics, attention entropy and gradient norms.

Each function returns a ``{name: tensor}`` row for ``self.log_dict``; tensors stay on the
device (the engine reads the row once). The names are the columns of ``metrics.csv`` that the
reports and ``compare`` read (docs/results.md says what each measures).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from solo_rgbd.losses.infonce import batch_top1_accuracy, top1_accuracy
from solo_rgbd.nn.distributed import batch_offset, gather_keys, mean_over_ranks
from solo_rgbd.nn.fusion import attention_entropy
from solo_rgbd.nn.reliance import (
    batchnorm_stats_kept,
    concat_embed,
    mask_diagnostics,
    modality_reliance,
)

Row = dict[str, Any]


def batch_accuracy(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Top-1 of each query's key among all keys of the global batch (chance 1 / batch): no
    stale keys to tell apart, and under shuffle-BN no BatchNorm leak."""
    return mean_over_ranks(batch_top1_accuracy(q, gather_keys(k), batch_offset(q.shape[0])))


def grad_norms(modules: Mapping[str, nn.Module]) -> Row:
    """``grad_norm_<name>``: the norm of the gradients reaching each module (0 without any)."""
    row: Row = {}
    for name, module in modules.items():
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        norm = torch.nn.utils.get_total_norm(grads, error_if_nonfinite=False) if grads else None
        row[f"grad_norm_{name}"] = norm if norm is not None else torch.zeros(())
    return row


def contrast_row(
    losses: Mapping[str, torch.Tensor],
    logits: Mapping[str, torch.Tensor],
    q: Mapping[str, torch.Tensor],
    k: Mapping[str, torch.Tensor],
) -> Row:
    """Per stream: ``loss_<s>``, top-1 against the queue ``acc_<s>`` and against the batch's
    keys ``acc_batch_<s>`` (the honest one)."""
    row: Row = {}
    for s in losses:
        row[f"loss_{s}"] = losses[s].detach()
        row[f"acc_{s}"] = top1_accuracy(logits[s])
        row[f"acc_batch_{s}"] = batch_accuracy(q[s], k[s])
    return row


def embedding_reliance(
    q: Mapping[str, torch.Tensor], k: Mapping[str, torch.Tensor], step: int
) -> Row:
    """Reliance of the rgb and depth embeddings side by side (before a fusion is trained, and
    for rows that have none), so every row of a grid has the same columns."""
    keys = concat_embed(k["rgb"], k["depth"])
    row = modality_reliance(
        concat_embed, q["rgb"].detach(), q["depth"].detach(), keys, batch_accuracy, step
    )
    return {**row, "reliance_on_fusion": 0.0}


def fusion_row(
    fusion: nn.Module,
    f_q: Mapping[str, torch.Tensor],
    q_f: torch.Tensor,
    k_f: torch.Tensor,
    logits_f: torch.Tensor,
    att: Mapping[str, torch.Tensor],
    att_k: Mapping[str, torch.Tensor],
    step: int,
) -> Row:
    """The fused objective (``acc_inter``, ``acc_batch_inter``), modality balance (attention
    entropy, how much RGB attention the mask removes, the mask's statistics) and the fused
    query's reliance on each modality's maps ``f_q`` (the step's own mask kept)."""
    keep, a_rgb = att["keep"], att["a_rgb"].detach()
    unit = torch.nn.functional.normalize(q_f.detach().float(), dim=1)
    b = unit.shape[0]
    row: Row = {
        "acc_inter": top1_accuracy(logits_f),
        "acc_batch_inter": batch_accuracy(q_f, k_f),
        # collapse shows here first: the fused queries' norm, and how alike they are
        "fused_norm": q_f.detach().float().norm(dim=1).mean(),
        "fused_query_cosine": ((unit @ unit.T).sum() - b) / max(1, b * (b - 1)),
        "attention_entropy_rgb": attention_entropy(a_rgb),
        "attention_entropy_depth": attention_entropy(att["a_depth"].detach()),
        "rgb_masked_share": 1.0 - keep.mean(),
        "rgb_masked_attention_mass": ((a_rgb * (1 - keep)).sum(1) / a_rgb.sum(1)).mean(),
        **mask_diagnostics(att["a_rgb"], att["logits_rgb"], keep, att_k["keep"]),
    }

    def embed(r: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        return fusion(r, d, keep=keep)[0]

    with batchnorm_stats_kept(fusion):
        reliance = modality_reliance(
            embed, f_q["rgb"].detach(), f_q["depth"].detach(), k_f, batch_accuracy, step
        )
    return {**row, **reliance, "reliance_on_fusion": 1.0}
