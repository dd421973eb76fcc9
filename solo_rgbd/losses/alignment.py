"""The cross-modal alignment baseline's objective (the paper's Table 4; CMC, Tian et al.)."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from solo_rgbd.losses.mbcf import PerStream, intra_loss


def alignment_loss(
    q: PerStream,
    k: PerStream,
    queues: PerStream,
    tau: float = 0.1,
    exclude: Mapping[str, torch.Tensor | None] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L_align = sum_s L(q^s, k^t_+, queue^t) with t the other stream of two: Eq. 4 with the
    keys (and queue) of the other modality, since both projectors map into the same space.

    q, k {s: (B, D)} for two streams, queues {s: (K, D)}; ``exclude`` {s: (B, K) bool or None}:
    entries of each queue that hold the query's own sample (the depth view of the same scene
    is no negative of its RGB query). Returns L_align and {"<s>_to_<t>": logits}.
    """
    if len(q) != 2:
        raise ValueError(f"alignment pairs two streams, got {sorted(q)}")
    s, t = q
    other = {s: t, t: s}
    total, _, logits = intra_loss(
        q, {a: k[other[a]] for a in q}, {a: queues[other[a]] for a in q}, tau,
        {a: (exclude or {}).get(other[a]) for a in q},
    )  # fmt: skip
    return total, {f"{a}_to_{other[a]}": logits[a] for a in q}
