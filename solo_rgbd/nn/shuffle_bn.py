"""Shuffle-BN for key encoders (MoCo, He et al. 2020, Sec. 3.3).

Without it a key encoder's BatchNorm normalises each query's positive key with statistics of
the very batch the query came from, and the contrastive task can be solved through that leak.
:func:`shuffled_forward` runs ``fn`` on a shuffled batch whose BN statistics come from groups
that do not match the query's batch, then restores the original order:

- under DDP (``world_size > 1``): the batch is gathered from all ranks, permuted by rank 0's
  permutation, each rank runs its slice, and the outputs are gathered and un-permuted, as in
  MoCo's reference code;
- on one device: the batch is permuted and split into ``groups`` chunks, each run on its own
  (so each chunk has its own BN statistics, as on ``groups`` GPUs), then un-permuted.

In eval mode (running statistics) the result equals ``fn(x)`` for every sample.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from einops import rearrange

from solo_rgbd.nn.distributed import gather_keys


def _tree_map(fn: Callable[[torch.Tensor], torch.Tensor], tree: Any) -> Any:
    if isinstance(tree, torch.Tensor):
        return fn(tree)
    if isinstance(tree, dict):
        return {k: _tree_map(fn, v) for k, v in tree.items()}
    if isinstance(tree, (tuple, list)):
        return type(tree)(_tree_map(fn, v) for v in tree)
    return tree


def _batch_cat(parts: list[Any]) -> Any:
    first = parts[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(parts, dim=0)
    if isinstance(first, dict):
        return {k: _batch_cat([p[k] for p in parts]) for k in first}
    if isinstance(first, (tuple, list)):
        return type(first)(_batch_cat([p[i] for p in parts]) for i in range(len(first)))
    return first


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@torch.no_grad()
def shuffled_forward(fn: Callable[..., Any], *inputs: torch.Tensor, groups: int = 2) -> Any:
    """``fn(*inputs)`` with shuffle-BN; ``inputs`` share the batch dimension (B, ...).

    ``fn`` returns a tensor or a dict / tuple of tensors with the batch first; every output is
    returned in the inputs' order.
    """
    b = inputs[0].shape[0]
    device = inputs[0].device
    if _distributed():
        world, rank = dist.get_world_size(), dist.get_rank()
        gathered = [gather_keys(x) for x in inputs]  # (W * B, ...)
        perm = torch.randperm(world * b, device=device)
        dist.broadcast(perm, src=0)  # one permutation for all ranks
        mine = rearrange(perm, "(w b) -> w b", w=world)[rank]  # (B,) this rank's share
        out = fn(*(x[mine] for x in gathered))  # this rank's shuffled slice
        full = _tree_map(gather_keys, out)  # (W * B, ...) in shuffled order
        inverse = torch.argsort(perm)
        own = rearrange(inverse, "(w b) -> w b", w=world)[rank]
        return _tree_map(lambda t: t[own], full)
    if groups <= 1 or b < 2 * groups:
        return fn(*inputs)
    perm = torch.randperm(b, device=device)
    chunks = [fn(*(x[idx] for x in inputs)) for idx in perm.chunk(groups)]
    out = _batch_cat(chunks)  # shuffled order
    inverse = torch.argsort(perm)
    return _tree_map(lambda t: t[inverse], out)
