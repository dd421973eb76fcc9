"""A FIFO queue of negative keys (MoCo's dictionary) as persistent buffers, instance-aware.

The keys, the sample index of each key and the pointer are buffers, so they are saved in
checkpoints and restored on resume. :meth:`KeyQueue.enqueue` is called explicitly after the
loss; the queue size need not divide the batch size (writes wrap around).

Why the indices: RGB-D datasets are small, so a queue of 16,384 keys over 13,189 pairs (the
paper), or 1,024 over 512 (our quick preset), holds older keys of the query's own image. MoCo
then pushes a query away from a view of itself (facebookresearch/moco issues 24 and 146).
:meth:`KeyQueue.same_instance` gives the (B, K) mask of those entries, which
:func:`~solo_rgbd.losses.infonce.infonce` drops from the negatives.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

NO_INSTANCE = -1  # the index of a key written without its sample's (or of an old checkpoint)
EMPTY = -2  # the index of a slot never written: it holds a random initial key


class KeyQueue(nn.Module):
    """``size`` keys of ``dim`` channels. The slots start as random unit keys, as in MoCo.

    ``start_empty=True``: the slots never written are left out of the negatives
    (:meth:`left_out`) instead of standing in as random keys. A queue that starts mid-run
    next to trained encoders needs it (MBCF's fused queue at the stage switch): its first real
    keys share a common direction that random keys lack, so "real key or random placeholder"
    is a cue the whole batch can win by pointing the same way, and the fused embedding
    collapsed onto it (docs/results.md, "The random-mask collapse").
    """

    #: state added after the first release: a checkpoint without it loads (every slot written)
    optional_state = ("ids",)

    def __init__(self, size: int, dim: int, start_empty: bool = False) -> None:
        super().__init__()
        if size < 1 or dim < 1:
            raise ValueError(f"KeyQueue needs size >= 1 and dim >= 1 (got {size}, {dim}).")
        self.size = size
        self.dim = dim
        self.start_empty = start_empty
        self.register_buffer("keys", F.normalize(torch.randn(size, dim), dim=1))  # (K, D)
        unwritten = EMPTY if start_empty else NO_INSTANCE  # (a MoCo queue never asks)
        self.register_buffer("ids", torch.full((size,), unwritten, dtype=torch.long))  # (K,)
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    def negatives(self) -> torch.Tensor:
        """A detached copy (K, D): safe to use in a loss while the queue is updated after."""
        return self.keys.clone().detach()

    def same_instance(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, K) bool: entry k of the queue is a key of query b's own sample (ids (B,))."""
        return ids.to(self.ids.device)[:, None] == self.ids[None, :]

    def left_out(self, ids: torch.Tensor, instance_aware: bool) -> torch.Tensor | None:
        """(B, K) bool of the entries that are no negative of query b (ids (B,)): its own
        sample's keys when ``instance_aware``, and the slots never written when the queue
        ``start_empty``; None when nothing is left out."""
        drop = self.same_instance(ids) if instance_aware else None
        if self.start_empty:
            empty = (self.ids == EMPTY)[None, :].expand(ids.shape[0], -1)
            drop = empty if drop is None else drop | empty
        return drop

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor, ids: torch.Tensor | None = None) -> None:
        """Write ``keys`` (B, D) and their sample ``ids`` (B,) at the pointer, oldest first out,
        wrapping around. Without ``ids`` the slots are marked as of no known sample."""
        keys = keys.detach().to(self.keys.dtype)
        if ids is None:
            ids = torch.full((keys.shape[0],), NO_INSTANCE, dtype=torch.long)
        ids = ids.detach().to(device=self.ids.device, dtype=torch.long)
        if ids.shape[0] != keys.shape[0]:
            raise ValueError(f"enqueue got {keys.shape[0]} keys but {ids.shape[0]} ids.")
        if keys.shape[0] >= self.size:
            keys, ids = keys[-self.size :], ids[-self.size :]
        b = keys.shape[0]
        # index arithmetic on the device: no host sync for the pointer
        idx = (self.ptr + torch.arange(b, device=keys.device)) % self.size
        self.keys.index_copy_(0, idx, keys)
        self.ids.index_copy_(0, idx, ids)
        self.ptr.copy_((self.ptr + b) % self.size)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # checkpoints from before the instance-aware queue: every slot written, sample unknown
        state_dict.setdefault(prefix + "ids", torch.full_like(self.ids, NO_INSTANCE))
        super()._load_from_state_dict(state_dict, prefix, *args)

    def extra_repr(self) -> str:
        return f"size={self.size}, dim={self.dim}"
