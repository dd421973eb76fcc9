"""The decoded dataset on disk, shared by every process of a machine (``data.cache=disk``).

One folder per dataset, size and decoding policy, ``<cache dir>/<key>/``:

- ``rgb.npy``   uint8 (N, 3, S, S)
- ``depth.npy`` int16 (N, 1, S, S), the code of :func:`~solo_rgbd.data.cache.encode_depth`
- ``gt.npy``    uint8 (N, 1, S, S), when every root has GT
- ``index.json``: the format version, the key, stems, sources, meta rows, original sizes, GT
  paths, and who decoded it in how long.

It is decoded once per machine: the first process takes a file lock and decodes; every other
process (DDP ranks, DataLoader workers, later runs and ``compare`` cells) waits for the lock and
memory-maps the arrays, so the pages are the kernel's page cache, shared, not a copy per
process. The folder appears whole or not at all: it is written as ``<key>.tmp-<pid>`` and
renamed, and the free space is checked before any decoding. The folder's name is the
decoded bytes' one key, :meth:`~solo_rgbd.data.decode.DecodeSpec.key`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from solo_rgbd.data.decode import DecodeSpec, PairFiles, decode
from solo_rgbd.data.pairstore import ArrayStore, PairMeta
from solo_rgbd.errors import DataError
from solo_rgbd.utils.locks import cache_lock

log = logging.getLogger(__name__)
DISK_FORMAT = 1
#: bytes per pair and pixel: RGB 3 x uint8, depth 1 x int16 (+ GT 1 x uint8)
BYTES_PER_PIXEL = {"rgb": 3, "depth": 2, "gt": 1}
_DTYPES = {"rgb": np.uint8, "depth": np.int16, "gt": np.uint8}
_CHANNELS = {"rgb": 3, "depth": 1, "gt": 1}


def decoded_bytes(n: int, size: int, with_gt: bool) -> int:
    """The decoded arrays of ``n`` pairs at ``size`` px, in bytes (RAM or disk alike)."""
    per_pixel = sum(v for k, v in BYTES_PER_PIXEL.items() if with_gt or k != "gt")
    return n * size * size * per_pixel


def human_bytes(n: float) -> str:
    """``1.50 GiB`` / ``12.3 MiB``."""
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def check_free_space(folder: Path, need: int) -> None:
    """A clear error, before any decoding, when ``folder``'s disk cannot hold ``need`` bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < need * 1.02 + (16 << 20):
        raise DataError(
            f"the disk cache needs {human_bytes(need)} in '{folder}', which has "
            f"{human_bytes(free)} free; point data.cache_dir (or SOLO_RGBD_CACHE) at a "
            "disk with room, or use data.cache=ram for a set that fits in memory."
        )


def build_disk_cache(spec: DecodeSpec, found: PairFiles, folder: Path) -> ArrayStore:
    """Open the decoded pairs of ``found`` in ``folder`` (named by the spec's key), decoding
    them first if no process has (one process decodes, the others wait on the lock)."""
    if not (folder / "index.json").exists():
        with cache_lock(folder):
            if not (folder / "index.json").exists():
                _write(folder, spec, found)
    return open_disk_cache(folder, spec.size)


def _write(folder: Path, spec: DecodeSpec, found: PairFiles) -> None:
    for stale in folder.parent.glob(folder.name + ".tmp-*"):  # a build killed earlier
        shutil.rmtree(stale, ignore_errors=True)
    names = ["rgb", "depth"] + (["gt"] if found.use_gt else [])
    size = spec.size
    check_free_space(folder.parent, decoded_bytes(len(found), size, found.use_gt))
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    tmp.mkdir(parents=True)
    start, sizes = time.perf_counter(), []
    try:
        files = {k: open(tmp / f"{k}.npy", "wb") for k in names}  # noqa: SIM115
        try:
            for k, f in files.items():
                shape = (len(found), _CHANNELS[k], size, size)
                header = {"descr": np.dtype(_DTYPES[k]).str, "fortran_order": False}
                np.lib.format.write_array_header_1_0(f, {**header, "shape": shape})
            for pair in decode(spec, found):
                sizes.append(pair.hw)
                for k in names:
                    files[k].write(getattr(pair, k).numpy().tobytes())
        finally:
            for f in files.values():
                f.close()
        _write_index(tmp, found, sizes, time.perf_counter() - start)
        os.replace(tmp, folder)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(
            f"writing the disk cache '{folder}' failed ({exc.strerror or exc}); nothing was "
            "kept. Free space there or point data.cache_dir at another disk, then rerun."
        ) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("decoded %d pairs into the disk cache %s", len(found), folder)


def _write_index(tmp: Path, found: PairFiles, sizes: list, seconds: float) -> None:
    index = {
        "format": DISK_FORMAT,
        "n": len(found),
        "stems": [f.stem for f in found.files],
        "sources": [f.source for f in found.files],
        "meta": found.meta if any(found.meta) else [],
        "sizes": [list(hw) for hw in sizes],
        "gt_paths": [str(f.gt) for f in found.files] if found.use_gt else [],
        "decoded_by_pid": os.getpid(),
        "decode_seconds": round(seconds, 3),
    }
    with open(tmp / "index.json", "w") as f:
        json.dump(index, f)
        f.flush()
        os.fsync(f.fileno())


def open_disk_cache(folder: Path, size: int | None = None) -> ArrayStore:
    """Memory-map a finished disk cache (copy-on-write maps: reads share the page cache); a
    damaged or foreign one (an index of the wrong shape, arrays of another length or ``size``)
    is a one-paragraph error naming the folder."""
    try:
        index = json.loads((folder / "index.json").read_text())
        if not isinstance(index, dict) or index.get("format") != DISK_FORMAT:
            raise ValueError(f"not an index of format {DISK_FORMAT}")
        n = int(index["n"])
        for key in ("stems", "sources", "meta", "sizes", "gt_paths"):
            if not isinstance(index[key], list) or len(index[key]) not in (n, 0):
                raise ValueError(f"index.json's '{key}' is not a list of {n} entries")
        if len(index["stems"]) != n or len(index["sizes"]) != n:
            raise ValueError("index.json lists no stem or size for some pairs")
        arrays = {
            k: np.load(folder / f"{k}.npy", mmap_mode="c")
            for k in ("rgb", "depth", "gt")
            if (folder / f"{k}.npy").exists()
        }
        if "rgb" not in arrays or "depth" not in arrays:
            raise ValueError("rgb.npy or depth.npy is missing")
        if any(a.shape[0] != n for a in arrays.values()):
            raise ValueError("an array's length differs from index.json")
        if size is not None and any(a.shape[-2:] != (size, size) for a in arrays.values()):
            raise ValueError(f"its arrays are not {size} x {size} px")
        sizes = [tuple(int(v) for v in hw) for hw in index["sizes"]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DataError(
            f"the disk cache '{folder}' is unreadable ({exc}); delete that folder and run "
            "again to decode the dataset anew."
        ) from None
    tensors = {k: torch.from_numpy(a) for k, a in arrays.items()}
    meta = PairMeta(index["stems"], index["sources"], sizes, index["gt_paths"], index["meta"])
    return ArrayStore(tensors["rgb"], tensors["depth"], tensors.get("gt"), meta, mapped=True)
