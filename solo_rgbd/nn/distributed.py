"""Gathering keys from all ranks before they enter a queue (no-op on one process)."""

from __future__ import annotations

import torch
import torch.distributed as dist


@torch.no_grad()
def gather_keys(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (B, D) from every rank along dim 0 (MoCo's concat_all_gather)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    out = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(out, x.contiguous())
    return torch.cat(out, dim=0)
