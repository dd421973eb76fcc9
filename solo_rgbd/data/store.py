"""``open_store(spec, kind)``: the one way to a :class:`~solo_rgbd.data.pairstore.PairStore`.

The kinds (``data.cache`` picks among the first three for a folder dataset, ``data.format``
names a pack or a plug-in):

- ``ram``: this process decodes the pairs and holds them (small sets; the fastest gather;
  ``materialize('cuda')`` copies them to the GPU);
- ``disk``: decoded once per machine into :mod:`solo_rgbd.data.disk_cache` and memory-mapped
  by every rank and worker;
- ``auto``: ``ram`` while the decoded arrays, once per process on this node, take at most half
  of the available memory, else ``disk`` (with one line saying so);
- ``litdata``: a folder made by ``solo-rgbd data pack`` (:mod:`solo_rgbd.data.shards`),
  checked against the spec's size, split and label policy;
- any name in the entry-point group ``solo_rgbd.stores``: ``NAME = pkg.module:open_fn`` with
  ``open_fn(spec: DecodeSpec) -> PairStore`` (``data.format=NAME``).

A forced ``ram`` that would not fit is an error that says so. A store is opened anew each time,
except inside :func:`keep_open` (``compare`` reuses them across its cells and seeds), where the
same spec and kind give the same store until a file of a root changes.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from solo_rgbd.data.decode import DecodeSpec, decode, default_cache_root, find_pairs, fingerprint
from solo_rgbd.data.disk_cache import build_disk_cache, decoded_bytes, human_bytes
from solo_rgbd.data.pairstore import ArrayStore, PairMeta, PairStore
from solo_rgbd.data.plugin_store import BUILT_IN, open_plugin
from solo_rgbd.errors import ConfigError, DataError
from solo_rgbd.utils.plugins import STORES_GROUP, store_entry_points

log = logging.getLogger(__name__)
STORAGES = ("auto", "ram", "disk")
_KEPT: ContextVar[dict | None] = ContextVar("solo_rgbd_kept_stores", default=None)


def store_kinds() -> list[str]:
    """Every kind :func:`open_store` takes: the built-ins, then the plug-ins."""
    return [*STORAGES, "litdata", *sorted(store_entry_points())]


@contextlib.contextmanager
def keep_open() -> Iterator[None]:
    """Within it, opening the same (spec, kind) again returns the store already opened."""
    token = _KEPT.set({} if _KEPT.get() is None else _KEPT.get())
    try:
        yield
    finally:
        _KEPT.reset(token)


def open_store(
    spec: DecodeSpec, kind: str = "auto", cache_dir: str | Path | None = None, copies: int = 1
) -> PairStore:
    """The pairs ``spec`` describes, held the ``kind`` way (see the module docstring).
    ``cache_dir``: the disk cache's folder; ``copies``: processes on this node that each hold
    a RAM store (DDP ranks)."""
    if kind == "litdata":
        from solo_rgbd.data.pack_store import open_pack

        return open_pack(spec)
    plugins = store_entry_points()
    shadowed = sorted(set(plugins) & set(BUILT_IN))
    if shadowed:
        raise ConfigError(
            f"the store plug-in '{shadowed[0]}' ({plugins[shadowed[0]].value}) takes the name of "
            f"solo-rgbd's built-in store '{shadowed[0]}', so it would never be used; rename its "
            f"entry point in the group '{STORES_GROUP}'."
        )
    if kind not in STORAGES:
        return open_plugin(kind, _plugin(kind), spec)
    kept = _KEPT.get()
    fp = fingerprint(spec.roots)  # walks every file once; the cache key reuses it
    key = (spec.key(fp), kind)
    if kept is not None and key in kept:
        store = kept[key]
    else:
        store = _decoded(spec, kind, fp, cache_dir, copies)
        if kept is not None:
            kept[key] = store
    if spec.require_gt and not store.has_gt:
        find_pairs(spec)  # names the root and the pairs without GT
    return store


def _decoded(
    spec: DecodeSpec, kind: str, fp: tuple, cache_dir: str | Path | None, copies: int
) -> ArrayStore:
    found = find_pairs(spec)
    need = decoded_bytes(len(found), spec.size, found.use_gt)
    if choose_storage(kind, need, copies) == "disk":
        folder = Path(cache_dir) if cache_dir else default_cache_root() / "decoded"
        return build_disk_cache(spec, found, folder / spec.key(fp))
    meta = PairMeta(
        [f.stem for f in found.files],
        [f.source for f in found.files],
        [],
        [str(f.gt) for f in found.files] if found.use_gt else [],
        found.meta if any(found.meta) else [],
    )
    return ArrayStore.from_pairs(decode(spec, found), meta, spec.size, found.use_gt)


def _plugin(kind: str) -> Any:
    ep = store_entry_points().get(kind)
    if ep is None:
        raise ConfigError(
            f"store '{kind}' is not registered; registered: {', '.join(store_kinds())}. A "
            f"plug-in store is an entry point in the group '{STORES_GROUP}' (re-run 'pip "
            "install -e .' of its package after adding it)."
        )
    return ep


def available_memory() -> int:
    """Bytes of memory available to new allocations (psutil: MemAvailable on Linux)."""
    import psutil

    return int(psutil.virtual_memory().available)


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
