"""The cross-modal alignment baseline's objective (the paper's Table 4; CMC, Tian et al.)."""

from __future__ import annotations

import torch

from solo_rgbd.losses.mbcf import intra_loss


def alignment_loss(
    q_rgb: torch.Tensor,
    k_depth: torch.Tensor,
    queue_depth: torch.Tensor,
    q_depth: torch.Tensor,
    k_rgb: torch.Tensor,
    queue_rgb: torch.Tensor,
    tau: float = 0.1,
    exclude_depth: torch.Tensor | None = None,
    exclude_rgb: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L_align = L(q^r, k^d_+, queue^d) + L(q^d, k^r_+, queue^r): Eq. 4 with the keys (and
    queues) of the other modality, since both projectors map into the same space.

    ``exclude_depth`` / ``exclude_rgb`` (B, K) bool: entries of each queue that hold the
    query's own sample (the depth view of the same scene is no negative of its RGB query)."""
    total, parts = intra_loss(
        q_rgb, k_depth, queue_depth, q_depth, k_rgb, queue_rgb, tau, exclude_depth, exclude_rgb
    )
    return total, {
        "logits_rgb_to_depth": parts["logits_rgb"],
        "logits_depth_to_rgb": parts["logits_depth"],
    }
