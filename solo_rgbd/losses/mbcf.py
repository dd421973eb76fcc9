"""MBCF's objectives (Eq. 4, 7, 8) as small pure functions over InfoNCE (Eq. 3)."""

from __future__ import annotations

import torch

from solo_rgbd.losses.infonce import infonce


def intra_loss(
    q_rgb: torch.Tensor,
    k_rgb: torch.Tensor,
    queue_rgb: torch.Tensor,
    q_depth: torch.Tensor,
    k_depth: torch.Tensor,
    queue_depth: torch.Tensor,
    tau: float = 0.1,
    exclude_rgb: torch.Tensor | None = None,
    exclude_depth: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. 4: L_intra = L(q^r, k^r_+, k^r_i) + L(q^d, k^d_+, k^d_i), each with its own queue.

    ``exclude_*`` (B, K) bool: queue entries of the query's own sample, left out (see infonce).
    """
    l_rgb, logits_rgb = infonce(q_rgb, k_rgb, queue_rgb, tau, exclude_rgb)
    l_depth, logits_depth = infonce(q_depth, k_depth, queue_depth, tau, exclude_depth)
    return l_rgb + l_depth, {
        "loss_rgb": l_rgb,
        "loss_depth": l_depth,
        "logits_rgb": logits_rgb,
        "logits_depth": logits_depth,
    }


def inter_loss(
    q_fused: torch.Tensor,
    k_fused: torch.Tensor,
    queue_fused: torch.Tensor,
    tau: float = 0.04,
    exclude: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 7: InfoNCE of fused queries against fused keys and the fused queue."""
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
