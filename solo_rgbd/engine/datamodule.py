"""The LightningDataModule of pretraining: decode once, serve resumable cached batches."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from solo_rgbd.data.pairstore import PairStore
from solo_rgbd.data.sources import build_from_config, index_loader, train_loader


class RGBDDataModule(pl.LightningDataModule):
    """Pretraining data; ``data.batch_size`` is the global batch, split over the Trainer's
    ``world_size`` (``batch_size`` overrides the per-device batch)."""

    def __init__(self, data: DictConfig, seed: int = 0, batch_size: int | None = None) -> None:
        super().__init__()
        self.data = data
        self.seed = seed
        self.per_device_batch = int(batch_size) if batch_size else None
        self.train_cache: PairStore | None = None
        self.val_cache: PairStore | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_cache is not None:
            return
        trainer = self.trainer
        copies = trainer.world_size // max(1, trainer.num_nodes) if trainer else 1
        cache = build_from_config(self.data, "train", copies=copies)  # copies: ranks per node
        frac = float(self.data.val_fraction)
        if frac > 0:
            n_val = max(1, int(round(frac * len(cache))))
            perm = torch.randperm(len(cache), generator=torch.Generator().manual_seed(self.seed))
            # the validation split is small: its own tensors (a view of a disk or shard store
            # would read it pair by pair at every validation)
            self.val_cache = cache.subset(perm[:n_val].tolist()).materialize()
            cache = cache.subset(perm[n_val:].tolist())
        device = str(self.data.cache_device)
        if device == "cuda" and torch.cuda.is_available():
            cache = cache.materialize("cuda")
        self.train_cache = cache

    def train_dataloader(self) -> DataLoader:
        """Resumable: the order of epoch e is a function of (seed, e), its position is saved."""
        assert self.train_cache is not None, "call setup() first"
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        batch = self.per_device_batch or int(self.data.batch_size) // world
        return train_loader(self.train_cache, batch, self.seed, rank, world)


class CacheDataModule(pl.LightningDataModule):
    """A task's labelled data, already cached: resumable training batches (sharded by rank),
    plain validation batches. ``batch_size`` is per device."""

    def __init__(
        self, train: PairStore, val: PairStore | None, batch_size: int, seed: int = 0
    ) -> None:
        super().__init__()
        self.train, self.val = train, val
        self.batch_size, self.seed = int(batch_size), int(seed)

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        return train_loader(self.train, self.batch_size, self.seed, rank, world)

    def val_dataloader(self) -> DataLoader | list:
        if self.val is None or len(self.val) == 0:
            return []
        return index_loader(self.val, self.batch_size, False, False)
