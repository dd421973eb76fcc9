"""A FIFO queue of negative keys (MoCo's dictionary) as persistent buffers.

The keys and the pointer are buffers, so they are saved in checkpoints and restored on
resume. :meth:`KeyQueue.enqueue` is called explicitly after the loss; the queue size need not
divide the batch size (writes wrap around).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class KeyQueue(nn.Module):
    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        if size < 1 or dim < 1:
            raise ValueError(f"KeyQueue needs size >= 1 and dim >= 1 (got {size}, {dim}).")
        self.size = size
        self.dim = dim
        self.register_buffer("keys", F.normalize(torch.randn(size, dim), dim=1))  # (K, D)
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    def negatives(self) -> torch.Tensor:
        """A detached copy (K, D): safe to use in a loss while the queue is updated after."""
        return self.keys.clone().detach()

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write ``keys`` (B, D) at the pointer, oldest first out, wrapping around."""
        keys = keys.detach().to(self.keys.dtype)
        if keys.shape[0] >= self.size:
            keys = keys[-self.size :]
        b = keys.shape[0]
        # index arithmetic on the device: no host sync for the pointer
        idx = (self.ptr + torch.arange(b, device=keys.device)) % self.size
        self.keys.index_copy_(0, idx, keys)
        self.ptr.copy_((self.ptr + b) % self.size)

    def extra_repr(self) -> str:
        return f"size={self.size}, dim={self.dim}"
