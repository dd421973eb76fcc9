"""The one interface every consumer reads decoded pairs through, and its two generic parts.

A :class:`PairStore` is a dataset of decoded pairs (:mod:`solo_rgbd.data.decode`) indexed
``0 .. len - 1``:

- ``len(store)``, ``store.has_gt``, ``store.device``;
- ``store.meta``: a :class:`PairMeta` (stems, sources, original sizes, GT paths, meta rows);
- ``store.batch(idx)``: ``{"rgb": uint8 (B, 3, S, S), "depth": int16 code (B, 1, S, S),
  "gt"?: uint8 (B, 1, S, S), "index": long (B,)}``, ``index`` being ``idx``;
- ``store.subset(idx)``: a store of those pairs (a :class:`StoreView`, no copy);
- ``store.materialize(device)``: an :class:`ArrayStore` of its own tensors on ``device``.

:class:`ArrayStore` holds the pairs as tensors (in this process's RAM, on a GPU, or
memory-mapped from the shared disk cache); :class:`StoreView` is the one view over any store.
A new backend implements :class:`PairStore` and is registered as a plug-in (see
:func:`solo_rgbd.data.store.open_store`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import torch

from solo_rgbd.data.decode import Pair


@dataclass(frozen=True)
class PairMeta:
    """What a store knows of its pairs besides their pixels, one entry per pair (``rows`` and
    ``gt_paths`` are empty when no pair has them)."""

    stems: list[str]
    sources: list[str]  # the root name of each pair
    sizes: list[tuple[int, int]]  # original RGB (H, W)
    gt_paths: list[str] = field(default_factory=list)  # GT files, to score at GT size
    rows: list[dict[str, str]] = field(default_factory=list)  # meta.csv rows (subsets)

    def pick(self, idx: Sequence[int]) -> PairMeta:
        def take(values: list) -> list:
            return [values[i] for i in idx] if values else []

        sizes = take(self.sizes)
        return PairMeta(take(self.stems), take(self.sources), sizes, take(self.gt_paths),
                        take(self.rows))  # fmt: skip


@runtime_checkable
class PairStore(Protocol):
    """Decoded RGB-D pairs, read by index (see the module docstring)."""

    @property
    def meta(self) -> PairMeta: ...

    @property
    def has_gt(self) -> bool: ...

    @property
    def device(self) -> torch.device: ...

    def __len__(self) -> int: ...

    def batch(self, idx: Sequence[int] | torch.Tensor) -> dict[str, torch.Tensor]: ...

    def subset(self, idx: Sequence[int]) -> PairStore: ...

    def materialize(self, device: str | torch.device = "cpu") -> ArrayStore: ...


class StoreView:
    """The pairs ``rows`` of ``base``, in that order (repeats allowed): no copy of its data."""

    def __init__(self, base: PairStore, rows: torch.Tensor) -> None:
        self.base, self.rows = base, rows
        self.meta = base.meta.pick(rows.tolist())

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def has_gt(self) -> bool:
        return self.base.has_gt

    @property
    def device(self) -> torch.device:
        return self.base.device

    def batch(self, idx: Sequence[int] | torch.Tensor) -> dict[str, torch.Tensor]:
        idx = torch.as_tensor(idx, dtype=torch.long)
        out = self.base.batch(self.rows[idx])
        out["index"] = idx
        return out

    def subset(self, idx: Sequence[int]) -> StoreView:
        return StoreView(self.base, self.rows[torch.as_tensor(list(idx), dtype=torch.long)])

    def materialize(self, device: str | torch.device = "cpu") -> ArrayStore:
        pairs = self.base.batch(self.rows)
        return ArrayStore(pairs["rgb"], pairs["depth"], pairs.get("gt"), self.meta).materialize(
            device
        )


class ArrayStore:
    """Every pair as tensors: ``rgb`` uint8 (N, 3, S, S), ``depth`` int16 (N, 1, S, S),
    ``gt`` uint8 (N, 1, S, S) or None. ``mapped``: the tensors are memory-mapped files shared
    by every process (``data.cache=disk``), so they are never copied by this store."""

    def __init__(
        self,
        rgb: torch.Tensor,
        depth: torch.Tensor,
        gt: torch.Tensor | None,
        meta: PairMeta,
        mapped: bool = False,
    ) -> None:
        lengths = {len(rgb), len(depth), len(meta.stems)} | ({len(gt)} if gt is not None else set())
        if len(lengths) != 1:
            raise ValueError("an ArrayStore's tensors and meta must hold the same pairs")
        self.rgb, self.depth, self.gt, self.meta, self.mapped = rgb, depth, gt, meta, mapped

    @classmethod
    def from_pairs(
        cls, pairs: Iterable[Pair], meta_of: PairMeta, size: int, use_gt: bool
    ) -> ArrayStore:
        """Fill tensors of this process in place from decoded pairs (no stacking copy);
        ``meta_of``: the pairs' meta, its sizes filled from the pairs."""
        n = len(meta_of.stems)
        rgb = torch.empty((n, 3, size, size), dtype=torch.uint8)
        depth = torch.empty((n, 1, size, size), dtype=torch.int16)
        gt = torch.empty((n, 1, size, size), dtype=torch.uint8) if use_gt else None
        sizes = []
        for i, pair in enumerate(pairs):
            rgb[i], depth[i] = pair.rgb, pair.depth
            if gt is not None:
                gt[i] = pair.gt
            sizes.append(pair.hw)
        meta = PairMeta(meta_of.stems, meta_of.sources, sizes, meta_of.gt_paths, meta_of.rows)
        return cls(rgb, depth, gt, meta)

    def __len__(self) -> int:
        return self.rgb.shape[0]

    @property
    def has_gt(self) -> bool:
        return self.gt is not None

    @property
    def device(self) -> torch.device:
        return self.rgb.device

    def batch(self, idx: Sequence[int] | torch.Tensor) -> dict[str, torch.Tensor]:
        """Gather a batch by index: {'rgb', 'depth', 'gt'?, 'index'} (see the module)."""
        idx = torch.as_tensor(idx, dtype=torch.long)
        rows = idx.to(self.rgb.device)
        out = {"rgb": self.rgb[rows], "depth": self.depth[rows], "index": idx}
        if self.gt is not None:
            out["gt"] = self.gt[rows]
        return out

    def subset(self, idx: Sequence[int]) -> StoreView:
        return StoreView(self, torch.as_tensor(list(idx), dtype=torch.long))

    def materialize(self, device: str | torch.device = "cpu") -> ArrayStore:
        """Tensors of its own on ``device`` (itself when they already are)."""
        device = torch.device(device)
        if not self.mapped and self.device == device:
            return self
        gt = None if self.gt is None else self.gt.to(device, copy=self.mapped)
        rgb, depth = (t.to(device, copy=self.mapped) for t in (self.rgb, self.depth))
        return ArrayStore(rgb, depth, gt, self.meta)
