"""Where the decoded dataset lives: in this process's RAM, or on disk, memory-mapped and shared.

``data.cache``:

- ``ram``: every process decodes and holds the arrays itself (small sets; the fastest
  gather; ``cache_device=cuda`` copies them to the GPU);
- ``disk``: decoded once per machine into :mod:`solo_rgbd.data.disk_cache` and memory-mapped
  by every rank and worker;
- ``auto`` (default): ``ram`` while the decoded arrays, once per process on this node, take at
  most half of the available memory, else ``disk`` (with one line saying so).

A forced ``ram`` that would not fit is an error that says so. A process keeps the few datasets
it opened last (``compare`` reuses them across cells and seeds) until a folder of a root
changes.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

from solo_rgbd.data.cache import (
    SALIENCY,
    LabelPolicy,
    RGBDCache,
    RootSpec,
    check_decode_policy,
    decode_to_ram,
    default_cache_root,
    fingerprint,
    pair_jobs,
)
from solo_rgbd.data.disk_cache import build_disk_cache, decoded_bytes, human_bytes
from solo_rgbd.errors import ConfigError, DataError

log = logging.getLogger(__name__)
STORAGES = ("auto", "ram", "disk")
_OPENED: OrderedDict[tuple, RGBDCache] = OrderedDict()
_OPENED_MAX = 6


def available_memory() -> int:
    """Bytes of memory available to new allocations (Linux: MemAvailable)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def choose_storage(storage: str, need: int, copies: int = 1) -> str:
    """``ram`` or ``disk`` for decoded arrays of ``need`` bytes held by ``copies`` processes."""
    if storage not in STORAGES:
        raise ConfigError(f"data.cache='{storage}' is unknown; use one of {', '.join(STORAGES)}.")
    if storage == "disk":
        return "disk"
    total, avail = need * max(1, copies), available_memory()
    if storage == "ram":
        if total > avail:
            raise DataError(
                f"data.cache=ram needs {human_bytes(total)} of RAM ({copies} process(es) x "
                f"{human_bytes(need)} of decoded pairs) and {human_bytes(avail)} is "
                "available; use data.cache=disk (or auto) to memory-map one shared copy."
            )
        return "ram"
    if total > avail // 2:
        log.warning(
            "data.cache=auto: the decoded dataset (%s x %d process(es)) exceeds half of the "
            "available memory (%s); using the shared disk cache.",
            human_bytes(need),
            copies,
            human_bytes(avail),
        )
        return "disk"
    return "ram"


def build_cache(
    roots: Sequence[RootSpec],
    size: int,
    strict_pairs: bool = True,
    on_constant_depth: str = "error",
    num_threads: int = 2,
    require_gt: bool = False,
    labels: LabelPolicy = SALIENCY,
    storage: str = "ram",
    cache_dir: str | Path | None = None,
    copies: int = 1,
) -> RGBDCache:
    """Discover and decode every pair of ``roots`` (concatenated in order), or reuse them.

    The returned cache is never modified in place (``subset`` and ``to`` make new ones).
    ``copies``: the processes on this node that will each hold a RAM cache (DDP ranks).
    """
    check_decode_policy(roots, on_constant_depth)
    fp = fingerprint(roots)  # walks every file once; the disk cache's key reuses it
    key = (fp, size, strict_pairs, on_constant_depth, require_gt, labels, storage)
    if key in _OPENED:
        _OPENED.move_to_end(key)
        return _OPENED[key]
    found = pair_jobs(roots, strict_pairs, require_gt)
    if not found.jobs:
        raise DataError(f"no RGB-D pair found in {[r.path for r in roots]}.")
    need = decoded_bytes(len(found), size, found.use_gt)
    if choose_storage(storage, need, copies) == "disk":
        folder = Path(cache_dir) if cache_dir else default_cache_root() / "decoded"
        cache = build_disk_cache(
            roots, found, size, strict_pairs, on_constant_depth, num_threads, labels, folder, fp
        )
    else:
        cache = decode_to_ram(found, size, on_constant_depth, num_threads, labels)
    _OPENED[key] = cache
    while len(_OPENED) > _OPENED_MAX:
        _OPENED.popitem(last=False)
    return cache
