"""A store from outside solo-rgbd: a folder of ``.npz`` files, one pair each.

Each file holds ``rgb`` uint8 (H, W, 3), ``depth`` float32 (H, W) in [0, 1] (near = 1, holes
0) and, optionally, ``gt`` uint8 (H, W). Pairs are read from disk batch by batch (nothing is
held in memory), resized to the spec's size. Installed with one entry point::

    [solo_rgbd.stores]
    npz = npzstore.store:open_npz

and chosen with ``data.format=npz data.path=FOLDER``. It implements
:class:`solo_rgbd.data.pairstore.PairStore` and nothing else of solo-rgbd's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from solo_rgbd.data.decode import DecodeSpec, encode_depth
from solo_rgbd.data.pairstore import ArrayStore, PairMeta, StoreView
from solo_rgbd.errors import DataError


def open_npz(spec: DecodeSpec) -> NpzStore:
    files = [f for root in spec.roots for f in sorted(Path(root.path).glob("*.npz"))]
    if not files:
        raise DataError(f"no .npz pair in {[r.path for r in spec.roots]}.")
    return NpzStore(files, spec.size, spec.require_gt)


def _resize(t: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """(C, H, W) float -> (C, size, size)."""
    kw = {"antialias": True, "align_corners": False} if mode == "bilinear" else {}
    return F.interpolate(t[None], size=(size, size), mode=mode, **kw)[0]


class NpzStore:
    def __init__(self, files: list[Path], size: int, require_gt: bool) -> None:
        self.files, self.size = files, size
        with np.load(files[0]) as first:
            self.has_gt = "gt" in first.files
        if require_gt and not self.has_gt:
            raise DataError(f"'{files[0]}' holds no 'gt' array; this task needs labels.")
        sizes = []
        for f in files:
            with np.load(f) as z:
                sizes.append(tuple(z["rgb"].shape[:2]))
        # no GT image files: sod eval scores against the store's own GT maps
        self.meta = PairMeta([f.stem for f in files], ["npz"] * len(files), sizes)

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def __len__(self) -> int:
        return len(self.files)

    def _pair(self, i: int) -> tuple[torch.Tensor, ...]:
        with np.load(self.files[i]) as z:
            rgb = torch.from_numpy(z["rgb"]).permute(2, 0, 1).float()
            rgb = _resize(rgb, self.size, "bilinear").round().clamp(0, 255).byte()
            depth = encode_depth(_resize(torch.from_numpy(z["depth"])[None], self.size, "bilinear"))
            if not self.has_gt:
                return rgb, depth
            gt = _resize(torch.from_numpy(z["gt"])[None].float(), self.size, "bilinear")
            return rgb, depth, gt.round().clamp(0, 255).byte()

    def batch(self, idx: Sequence[int] | torch.Tensor) -> dict[str, torch.Tensor]:
        idx = torch.as_tensor(idx, dtype=torch.long)
        pairs = [self._pair(int(i)) for i in idx]
        keys = ("rgb", "depth", "gt") if self.has_gt else ("rgb", "depth")
        out = {k: torch.stack([p[j] for p in pairs]) for j, k in enumerate(keys)}
        out["index"] = idx
        return out

    def subset(self, idx: Sequence[int]) -> StoreView:
        return StoreView(self, torch.as_tensor(list(idx), dtype=torch.long))

    def materialize(self, device: str | torch.device = "cpu") -> ArrayStore:
        b = self.batch(range(len(self)))
        return ArrayStore(b["rgb"], b["depth"], b.get("gt"), self.meta).materialize(device)
