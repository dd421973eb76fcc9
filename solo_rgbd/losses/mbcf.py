"""MBCF's objectives (Eq. 4, 7, 8) as small pure functions over InfoNCE (Eq. 3).

Per-stream values are ``{stream: tensor}`` dicts, so IntraCLM works for any set of streams.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from solo_rgbd.losses.infonce import infonce

PerStream = Mapping[str, torch.Tensor]


def intra_loss(
    q: PerStream,
    k: PerStream,
    queues: PerStream,
    tau: float = 0.1,
    exclude: Mapping[str, torch.Tensor | None] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Eq. 4: L_intra = sum_s L(q^s, k^s_+, queue^s), each stream against its own queue.

    q, k {s: (B, D)}, queues {s: (K, D)}; ``exclude`` {s: (B, K) bool or None}: entries of
    each queue that hold the query's own sample, left out (see :func:`infonce`). Returns
    L_intra, {s: L^s} and {s: logits (B, 1 + K)}.
    """
    losses: dict[str, torch.Tensor] = {}
    logits: dict[str, torch.Tensor] = {}
    for s in q:
        drop = exclude.get(s) if exclude is not None else None
        losses[s], logits[s] = infonce(q[s], k[s], queues[s], tau, drop)
    total = None
    for term in losses.values():
        total = term if total is None else total + term
    assert total is not None, "intra_loss needs at least one stream"
    return total, losses, logits


def inter_loss(
    q_fused: torch.Tensor,
    k_fused: torch.Tensor,
    queue_fused: torch.Tensor,
    tau: float = 0.04,
    exclude: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 7: InfoNCE of fused queries (B, D) against fused keys and the fused queue (K, D)."""
    return infonce(q_fused, k_fused, queue_fused, tau, exclude)


def total_loss(
    l_intra: torch.Tensor,
    l_inter: torch.Tensor | None,
    lambda_intra: float = 0.5,
    lambda_inter: float = 0.5,
) -> torch.Tensor:
    """Eq. 8: J = lambda1 * L_intra + lambda2 * L_inter.

    ``l_inter=None`` is stage 1 of the two-stage schedule, where IntraCLM trains alone as
    plain per-modality MoCo: J = L_intra, unscaled, so that stage 1's lr (0.03) means what it
    means for MoCo. The paper does not say whether lambda1 applies there; we read "train the
    IntraCLM first" as MoCo's own objective.
    """
    if l_inter is None:
        return l_intra
    return lambda_intra * l_intra + lambda_inter * l_inter
