"""A resumable, rank-aware training order: the permutation of epoch ``e`` is a pure function of
``(seed, e)``, so a run resumed at any step draws exactly the batches the killed run would have.

:class:`EpochSampler` yields this rank's indices of one epoch and counts what it has handed
out; :class:`ResumableLoader` is a plain :class:`~torch.utils.data.DataLoader` that exposes
that position as ``state_dict`` / ``load_state_dict`` (the protocol Lightning saves in its
checkpoints and restores before a mid-epoch restart).

Under DDP every rank computes the same global permutation; global batch ``t`` is
``perm[t * W * B : (t + 1) * W * B]`` and rank ``r`` takes its ``r``-th slice of ``B``. The keys
gathered across ranks are therefore in the same order as one process with batch ``W * B``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from einops import rearrange
from torch.utils.data import DataLoader, Sampler


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The global order of epoch ``epoch``: (n,) long, the same on every rank and every run."""
    gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    return torch.randperm(n, generator=gen)


class EpochSampler(Sampler[int]):
    """This rank's indices of one epoch, in whole batches, resumable mid-epoch.

    ``set_epoch`` is called by Lightning at the start of every epoch; ``served`` counts the
    indices already yielded in the current epoch (Lightning fetches sized loaders without
    prefetching, so after batch k it is exactly ``(k + 1) * batch_size``).
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(
                f"EpochSampler needs batch_size >= 1 and 0 <= rank < world_size "
                f"(got {batch_size}, {rank}, {world_size})."
            )
        self.n, self.batch_size, self.seed, self.shuffle = n, batch_size, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.served = 0

    @property
    def num_batches(self) -> int:
        """Whole batches per epoch on every rank (the remainder is dropped)."""
        return self.n // (self.batch_size * self.world_size)

    def __len__(self) -> int:
        return self.num_batches * self.batch_size

    def set_epoch(self, epoch: int) -> None:
        if int(epoch) != self.epoch:
            self.epoch, self.served = int(epoch), 0

    def indices(self) -> torch.Tensor:
        """This rank's indices of the current epoch, in order: (num_batches * B,)."""
        order = (
            epoch_permutation(self.n, self.seed, self.epoch)
            if self.shuffle
            else torch.arange(self.n)
        )
        b, w = self.batch_size, self.world_size
        per_step = rearrange(order[: self.num_batches * b * w], "(t w b) -> t w b", w=w, b=b)
        return rearrange(per_step[:, self.rank], "t b -> (t b)")  # step after step

    def __iter__(self) -> Iterator[int]:
        # a generator: the position is read at the first next(), after Lightning's set_epoch
        for i in self.indices()[self.served :].tolist():
            self.served += 1
            yield i
        # the epoch is over: the next iteration without set_epoch starts the next epoch
        self.epoch, self.served = self.epoch + 1, 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "served": self.served, "seed": self.seed, "n": self.n}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if int(state.get("n", self.n)) != self.n:
            raise ValueError(
                f"the checkpoint's data order is for {state['n']} training pairs, the dataset "
                f"now has {self.n}; resume with the same data (and data.val_fraction)."
            )
        self.epoch, self.served = int(state["epoch"]), int(state["served"])


class ResumableLoader(DataLoader):
    """A DataLoader over an :class:`EpochSampler` whose position lives in checkpoints."""

    def __init__(
        self, n: int, collate_fn: Callable[[list[int]], Any], sampler: EpochSampler, **kw: Any
    ) -> None:
        super().__init__(
            range(n),
            batch_size=sampler.batch_size,
            sampler=sampler,
            drop_last=True,
            collate_fn=collate_fn,
            num_workers=0,
            # a private generator: creating the iterator never draws from the global RNG
            generator=torch.Generator().manual_seed(sampler.seed),
            **kw,
        )
        self.epoch_sampler = sampler

    def state_dict(self) -> dict[str, int]:
        return self.epoch_sampler.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch_sampler.load_state_dict(state)
