"""Decode once, cache resized tensors: the paired RGB-D dataset.

:class:`RGBDCache` decodes every pair of one or several roots once (in a thread pool), resizes
it to a square ``size`` and keeps it in memory as

- ``rgb``   uint8  (N, 3, S, S)
- ``depth`` int16 (N, 1, S, S): the normalised depth (near = 1, holes 0) quantised to 16 bits,
  so the full range of a 16-bit sensor survives the cache (:func:`encode_depth` /
  :func:`decode_depth`; int16 rather than uint16 because CUDA indexes int16 everywhere)
- ``gt``    uint8  (N, 1, S, S), present when every root has GT

so epochs after the first do no image decoding (:mod:`solo_rgbd.data.store` picks where the
decoded arrays live: in this process, or memory-mapped from a shared file on disk, see
:mod:`solo_rgbd.data.disk_cache`). ``to('cuda')`` moves the cache to the GPU, and
batches are then gathered there without a host round-trip. RGB and depth of different sizes
are both resized to ``size`` (depth is effectively resized to the RGB frame), with one warning
per root that names how many pairs and a few examples.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from solo_rgbd.data.layout import discover_pairs
from solo_rgbd.data.readers import ConstantDepthError, read_depth, read_mask, read_rgb
from solo_rgbd.data.synthetic import read_meta
from solo_rgbd.errors import DataError

log = logging.getLogger(__name__)
DEPTH_SCALE = 65535.0


def encode_depth(depth: torch.Tensor) -> torch.Tensor:
    """float depth in [0, 1] -> int16 holding round(d * 65535) - 32768."""
    q = (depth.clamp(0, 1) * DEPTH_SCALE).round().to(torch.int32) - 32768
    return q.to(torch.int16)


def decode_depth(code: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """int16 from :func:`encode_depth` -> depth in [0, 1] (exact to 1 / 65535)."""
    return (code.to(torch.float32) + 32768.0).div_(DEPTH_SCALE).to(dtype)


@dataclass(frozen=True)
class LabelPolicy:
    """How a task's label maps are read and brought to the cache's size.

    Saliency masks (0..255 soft maps) are resized bilinearly; class-id maps (segmentation)
    must be resized with ``nearest`` so no id is invented between two classes.
    """

    reader: Callable[[Path], np.ndarray] = read_mask
    resize: str = "bilinear"  # bilinear | nearest

    def load(self, path: Path, size: int) -> torch.Tensor:
        """(1, size, size) uint8."""
        label = torch.from_numpy(np.asarray(self.reader(path)))[None].float()
        if self.resize == "nearest":
            label = F.interpolate(label[None], size=(size, size), mode="nearest-exact")[0]
        elif self.resize == "bilinear":
            label = _resize(label, size)
        else:
            raise ValueError(f"LabelPolicy.resize must be bilinear or nearest, not {self.resize!r}")
        return label.round().clamp(0, 255).to(torch.uint8)


SALIENCY = LabelPolicy()


@dataclass(frozen=True)
class RootSpec:
    """One dataset folder and how to read it."""

    path: str
    invert_depth: bool = False
    name: str = ""


@dataclass
class RGBDCache:
    rgb: torch.Tensor
    depth: torch.Tensor
    gt: torch.Tensor | None
    stems: list[str]
    sources: list[str]  # the root name of each sample
    meta: list[dict[str, str]] = field(default_factory=list)
    sizes: list[tuple[int, int]] = field(default_factory=list)  # original RGB (H, W)
    gt_paths: list[str] = field(default_factory=list)  # GT files, for scoring at GT size
    #: a view of memory-mapped arrays (data.cache=disk): the rows of rgb / depth / gt it holds,
    #: so a subset never copies the dataset into RAM; None: every row, in order
    rows: torch.Tensor | None = None
    #: the arrays are memory-mapped files shared by every process (data.cache=disk)
    mapped: bool = False

    def __len__(self) -> int:
        return self.rgb.shape[0] if self.rows is None else len(self.rows)

    @property
    def has_gt(self) -> bool:
        return self.gt is not None

    def materialized(self) -> RGBDCache:
        """The same pairs with the view's rows copied into tensors of their own."""
        if self.rows is None:
            return self
        idx = self.rows
        gt = None if self.gt is None else self.gt[idx]
        return RGBDCache(self.rgb[idx], self.depth[idx], gt, *self._lists(range(len(idx))))

    def _lists(self, pick: Sequence[int]) -> tuple[list, list, list, list, list]:
        return (
            [self.stems[i] for i in pick],
            [self.sources[i] for i in pick],
            [self.meta[i] for i in pick] if self.meta else [],
            [self.sizes[i] for i in pick] if self.sizes else [],
            [self.gt_paths[i] for i in pick] if self.gt_paths else [],
        )

    @property
    def device(self) -> torch.device:
        return self.rgb.device

    def to(self, device: str | torch.device) -> RGBDCache:
        cache = self.materialized()
        return RGBDCache(
            cache.rgb.to(device),
            cache.depth.to(device),
            None if cache.gt is None else cache.gt.to(device),
            cache.stems,
            cache.sources,
            cache.meta,
            cache.sizes,
            cache.gt_paths,
        )

    def subset(self, indices: Sequence[int]) -> RGBDCache:
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        lists = self._lists([int(i) for i in idx])
        if self.rows is not None or self.mapped:  # a view: no copy of the mapped arrays
            rows = idx if self.rows is None else self.rows[idx]
            return RGBDCache(self.rgb, self.depth, self.gt, *lists, rows=rows, mapped=True)
        gt = None if self.gt is None else self.gt[idx]
        return RGBDCache(self.rgb[idx], self.depth[idx], gt, *lists)

    def batch(self, indices: Sequence[int] | torch.Tensor) -> dict[str, torch.Tensor]:
        """Gather a batch: {'rgb': uint8, 'depth': int16 code, 'gt'?: uint8, 'index': long}."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        rows = idx if self.rows is None else self.rows[idx]
        dev_idx = rows.to(self.rgb.device)
        out = {"rgb": self.rgb[dev_idx], "depth": self.depth[dev_idx], "index": idx}
        if self.gt is not None:
            out["gt"] = self.gt[dev_idx]
        return out


def _resize(t: torch.Tensor, size: int) -> torch.Tensor:
    """(C, H, W) float -> (C, size, size) with antialiasing."""
    if t.shape[-2:] == (size, size):
        return t
    return F.interpolate(
        t[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )[0]


def load_pair(
    rgb_path: Path,
    depth_path: Path,
    gt_path: Path | None,
    size: int,
    invert_depth: bool,
    on_constant_depth: str = "error",
    labels: LabelPolicy = SALIENCY,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, bool, tuple[int, int]]:
    """Decode, normalise, resize one pair: rgb, depth, gt, sizes_differ, RGB (H, W)."""
    rgb = read_rgb(rgb_path)
    try:
        depth, _ = read_depth(depth_path, invert=invert_depth)
    except ConstantDepthError:
        if on_constant_depth != "zeros":
            raise
        depth = np.zeros(rgb.shape[:2], dtype=np.float32)
    differ = depth.shape != rgb.shape[:2]
    rgb_t = _resize(torch.from_numpy(rgb).permute(2, 0, 1).float(), size)
    depth_t = _resize(torch.from_numpy(depth)[None], size)
    rgb_u8 = rgb_t.round().clamp(0, 255).to(torch.uint8)
    depth_code = encode_depth(depth_t)
    gt_u8 = labels.load(gt_path, size) if gt_path is not None else None
    return rgb_u8, depth_code, gt_u8, differ, (rgb.shape[0], rgb.shape[1])


def fingerprint(roots: Sequence[RootSpec]) -> tuple:
    """Each root and a digest of every file below it (path, size, modification and change
    times): a file added, removed or rewritten in place is decoded again. A rewrite changes the
    file's times but not its folder's, so folder times alone are not enough (issue 30)."""
    out = []
    for spec in roots:
        root = Path(spec.path).expanduser()
        out.append((str(root.resolve()), spec.invert_depth, spec.name, _tree_digest(root)))
    return tuple(out)


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(folder, name)
            try:
                st = os.stat(path)
            except OSError:  # vanished while we looked: the digest differs anyway
                continue
            rel = os.path.relpath(path, root)
            digest.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\n".encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class PairJobs:
    """Every pair of some roots, found but not decoded: (spec, name, stem, rgb, depth, gt)."""

    jobs: list[tuple]
    meta: list[dict]
    use_gt: bool  # every root has a GT map for every pair

    def __len__(self) -> int:
        return len(self.jobs)


def pair_jobs(roots: Sequence[RootSpec], strict_pairs: bool, require_gt: bool) -> PairJobs:
    """Discover every pair of ``roots`` (concatenated in order), with their meta rows."""
    use_gt = True
    jobs: list[tuple] = []
    meta: list[dict] = []
    for spec in roots:
        pairs = discover_pairs(spec.path, strict=strict_pairs)
        name = spec.name or Path(spec.path).name
        if pairs.depth_without_rgb:
            log.warning(
                "%s: skipped %d depth file(s) without an RGB partner: %s",
                name,
                len(pairs.depth_without_rgb),
                ", ".join(pairs.depth_without_rgb[:10])
                + (" ..." if len(pairs.depth_without_rgb) > 10 else ""),
            )
        if pairs.rgb_without_depth:
            log.warning(
                "%s: skipped %d RGB file(s) without depth", name, len(pairs.rgb_without_depth)
            )
        has_gt = pairs.has_gt and not pairs.missing_gt
        if require_gt and not has_gt:
            missing = ", ".join(pairs.missing_gt[:10]) if pairs.has_gt else "the whole GT folder"
            raise DataError(
                f"dataset '{spec.path}' has no GT for {missing}; SOD training and evaluation "
                "need a GT/Mask folder with a mask for every pair (use 'sod predict' for "
                "unlabelled data)."
            )
        use_gt &= has_gt
        root_meta = read_meta(spec.path)
        for stem in pairs.stems:
            jobs.append((spec, name, stem, pairs.rgb[stem], pairs.depth[stem], pairs.gt.get(stem)))
            meta.append(root_meta.get(stem, {}))
    return PairJobs(jobs, meta, use_gt)


def check_decode_policy(roots: Sequence[RootSpec], on_constant_depth: str) -> None:
    if on_constant_depth not in ("error", "zeros"):
        raise DataError(
            f"data.on_constant_depth must be 'error' or 'zeros', not '{on_constant_depth}'."
        )
    if not roots:
        raise DataError("no dataset root given: set data.path (or data.roots).")


#: pairs decoded by this process; the disk cache's tests count them
DECODE_COUNT = [0]
_COUNT_LOCK = threading.Lock()


def decode_pairs(
    found: PairJobs,
    size: int,
    on_constant_depth: str,
    num_threads: int,
    labels: LabelPolicy,
    block: int = 256,
) -> Iterator[tuple[tuple, tuple]]:
    """(job, (rgb, depth, gt, sizes_differ, (H, W))) of every pair, in order, decoded in a
    thread pool a block at a time (memory stays bounded by the block); one warning per root
    whose depth maps had to be resized to the RGB frame."""
    differ: dict[str, list[str]] = {}

    def work(job):
        spec, _, _, rgb_path, depth_path, gt_path = job
        with _COUNT_LOCK:
            DECODE_COUNT[0] += 1
        gt = gt_path if found.use_gt else None
        return load_pair(
            rgb_path, depth_path, gt, size, spec.invert_depth, on_constant_depth, labels
        )

    with ThreadPoolExecutor(max(1, num_threads)) as pool:
        for start in range(0, len(found.jobs), block):
            jobs = found.jobs[start : start + block]
            for job, out in zip(jobs, pool.map(work, jobs), strict=True):
                if out[3]:
                    differ.setdefault(str(job[0].path), []).append(job[2])
                yield job, out
    for root, bad in differ.items():
        log.warning(
            "%s: %d pair(s) have depth of a different size than RGB (e.g. %s); depth was "
            "resized to the RGB frame",
            root,
            len(bad),
            ", ".join(bad[:5]),
        )


def decode_to_ram(
    found: PairJobs, size: int, on_constant_depth: str, num_threads: int, labels: LabelPolicy
) -> RGBDCache:
    """Decode every pair into tensors of this process, filled in place (no stacking copy)."""
    n, use_gt = len(found), found.use_gt
    rgb = torch.empty((n, 3, size, size), dtype=torch.uint8)
    depth = torch.empty((n, 1, size, size), dtype=torch.int16)
    gt = torch.empty((n, 1, size, size), dtype=torch.uint8) if use_gt else None
    sizes = []
    pairs = decode_pairs(found, size, on_constant_depth, num_threads, labels)
    for i, (_, (r, d, g, _, hw)) in enumerate(pairs):
        rgb[i], depth[i] = r, d
        if gt is not None:
            gt[i] = g
        sizes.append(hw)
    return RGBDCache(
        rgb,
        depth,
        gt,
        [job[2] for job in found.jobs],
        [job[1] for job in found.jobs],
        found.meta if any(found.meta) else [],
        sizes,
        [str(job[5]) for job in found.jobs] if use_gt else [],
    )


def default_cache_root() -> Path:
    return Path(os.environ.get("SOLO_RGBD_CACHE", Path.home() / ".cache" / "solo-rgbd"))
