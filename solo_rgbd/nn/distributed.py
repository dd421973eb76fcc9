"""Gathering keys from all ranks before they enter a queue (no-op on one process)."""

from __future__ import annotations

import torch
import torch.distributed as dist
from lightly.models.utils import concat_all_gather


def _world() -> int:
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size()


@torch.no_grad()
def gather_keys(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (B, ...) from every rank along dim 0 (lightly's concat_all_gather;
    ``x`` itself on one process)."""
    if _world() == 1:
        return x
    return concat_all_gather(x.contiguous())


def batch_offset(local_batch: int) -> int:
    """Where this rank's rows start in a batch gathered by :func:`gather_keys`."""
    return 0 if _world() == 1 else dist.get_rank() * local_batch


@torch.no_grad()
def mean_over_ranks(x: torch.Tensor) -> torch.Tensor:
    """The mean of a scalar over all ranks (each rank's batch has the same size)."""
    if _world() == 1:
        return x
    x = x.detach().clone()
    dist.all_reduce(x)
    return x / dist.get_world_size()
