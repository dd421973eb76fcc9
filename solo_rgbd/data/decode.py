"""From files to decoded pairs: what every store holds, and the one key of those bytes.

A dataset's pairs are found (:func:`find_pairs`: one :class:`PairFile` per pair, in the roots'
order) and decoded (:func:`decode`: one :class:`Pair` per file, in a thread pool), each resized
to a square ``size`` as

- ``rgb``   uint8  (3, S, S)
- ``depth`` int16 (1, S, S): the normalised depth (near = 1, holes 0) quantised to 16 bits,
  so the full range of a 16-bit sensor survives (:func:`encode_depth` / :func:`decode_depth`;
  int16 rather than uint16 because CUDA indexes int16 everywhere)
- ``gt``    uint8  (1, S, S), when every root has GT, read by the task's :class:`LabelPolicy`.

:class:`DecodeSpec` names everything that decides those bytes (the roots, the size, the pairing,
depth and label policies) and gives the one cache key (:meth:`DecodeSpec.key`). The stores of
:mod:`solo_rgbd.data.store` (RAM, memory-mapped disk, LitData packs, plug-ins) hold the
decoded pairs; they all consume :func:`decode`. RGB and depth of different sizes are both
resized to ``size`` (depth is effectively resized to the RGB frame), with one warning per root
that names how many pairs and a few examples.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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
class PairFile:
    """One pair found on disk, not decoded."""

    root: RootSpec
    source: str  # the root's display name
    stem: str
    rgb: Path
    depth: Path
    gt: Path | None


@dataclass(frozen=True)
class PairFiles:
    """Every pair of some roots, found but not decoded, with their meta rows."""

    files: list[PairFile]
    meta: list[dict]
    use_gt: bool  # every root has a GT map for every pair

    def __len__(self) -> int:
        return len(self.files)


@dataclass(frozen=True)
class Pair:
    """One decoded pair, the unit every store is filled with."""

    rgb: torch.Tensor  # uint8 (3, S, S)
    depth: torch.Tensor  # int16 (1, S, S), the code of encode_depth
    gt: torch.Tensor | None  # uint8 (1, S, S)
    hw: tuple[int, int]  # the original RGB (H, W)


@dataclass(frozen=True)
class DecodeSpec:
    """What decides a store's bytes, and how to read them.

    ``split``: the split a task reads (``None``: any, e.g. ``sod predict``); ``require_gt``: a
    task that needs a label for every pair. Neither changes the bytes, so neither is in
    :meth:`key`; ``threads`` is how many decode at once."""

    roots: tuple[RootSpec, ...]
    size: int
    strict_pairs: bool = True
    on_constant_depth: str = "error"
    labels: LabelPolicy = SALIENCY
    require_gt: bool = False
    split: str | None = "train"
    threads: int = 2

    def __post_init__(self) -> None:
        if self.on_constant_depth not in ("error", "zeros"):
            raise DataError(
                f"data.on_constant_depth must be 'error' or 'zeros', not "
                f"'{self.on_constant_depth}'."
            )
        if not self.roots:
            raise DataError("no dataset root given: set data.path (or data.roots).")

    def key(self, fp: tuple | None = None) -> str:
        """The one name of the decoded bytes (hex, 20 characters): a hash of the roots' files
        (``fp``: their :func:`fingerprint` when the caller has it, it walks every file), the
        size, the pairing and depth policies and the label reader."""
        reader = self.labels.reader
        policy = f"{reader.__module__}.{reader.__qualname__}:{self.labels.resize}"
        fp = fingerprint(self.roots) if fp is None else fp
        text = repr((KEY_FORMAT, fp, self.size, self.strict_pairs, self.on_constant_depth, policy))
        return hashlib.sha256(text.encode()).hexdigest()[:20]


#: bump when the decoded bytes of the same files change (the disk caches' folder names)
KEY_FORMAT = 1


def find_pairs(spec: DecodeSpec) -> PairFiles:
    """Discover every pair of ``spec.roots`` (concatenated in order), with their meta rows."""
    use_gt = True
    files: list[PairFile] = []
    meta: list[dict] = []
    for root in spec.roots:
        pairs = discover_pairs(root.path, strict=spec.strict_pairs)
        name = root.name or Path(root.path).name
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
        if spec.require_gt and not has_gt:
            missing = ", ".join(pairs.missing_gt[:10]) if pairs.has_gt else "the whole GT folder"
            raise DataError(
                f"dataset '{root.path}' has no GT for {missing}; SOD training and evaluation "
                "need a GT/Mask folder with a mask for every pair (use 'sod predict' for "
                "unlabelled data)."
            )
        use_gt &= has_gt
        root_meta = read_meta(root.path)
        for stem in pairs.stems:
            gt = pairs.gt.get(stem)
            files.append(PairFile(root, name, stem, pairs.rgb[stem], pairs.depth[stem], gt))
            meta.append(root_meta.get(stem, {}))
    if not files:
        raise DataError(f"no RGB-D pair found in {[r.path for r in spec.roots]}.")
    return PairFiles(files, meta, use_gt)


def decode_file(file: PairFile, spec: DecodeSpec, with_gt: bool = True) -> tuple[Pair, bool]:
    """One pair decoded, normalised and resized, and whether its depth had another size than
    its RGB (resized to the RGB frame). Every store's pairs come from here: :func:`decode` for
    the RAM and disk stores, the pack writer's items for LitData."""
    gt = file.gt if with_gt else None
    rgb, depth, label, resized, hw = load_pair(
        file.rgb, file.depth, gt, spec.size, file.root.invert_depth, spec.on_constant_depth,
        spec.labels,
    )  # fmt: skip
    return Pair(rgb, depth, label, hw), resized


def decode(spec: DecodeSpec, found: PairFiles, block: int = 256) -> Iterator[Pair]:
    """Every pair of ``found``, in order, decoded ``spec.threads`` at a time a block at a time
    (memory stays bounded by the block); one warning per root whose depth maps had to be
    resized to the RGB frame."""
    differ: dict[str, list[str]] = {}

    def work(file: PairFile) -> tuple[Pair, bool]:
        return decode_file(file, spec, found.use_gt)

    from tqdm import tqdm

    bar = tqdm(total=len(found), desc="decoding pairs", unit="pair", delay=2, leave=False)
    with ThreadPoolExecutor(max(1, spec.threads)) as pool, bar:
        for start in range(0, len(found), block):
            files = found.files[start : start + block]
            for file, (pair, resized) in zip(files, pool.map(work, files), strict=True):
                if resized:
                    differ.setdefault(str(file.root.path), []).append(file.stem)
                bar.update()
                yield pair
    for root, bad in differ.items():
        log.warning(
            "%s: %d pair(s) have depth of a different size than RGB (e.g. %s); depth was "
            "resized to the RGB frame",
            root,
            len(bad),
            ", ".join(bad[:5]),
        )


def default_cache_root() -> Path:
    return Path(os.environ.get("SOLO_RGBD_CACHE", Path.home() / ".cache" / "solo-rgbd"))
