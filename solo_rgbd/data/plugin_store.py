"""Store plug-ins, checked at the door as the engine checks modules.

A plug-in (``NAME = pkg.module:open_fn`` in the entry-point group ``solo_rgbd.stores``) returns
a :class:`~solo_rgbd.data.pairstore.PairStore`. Before anything trains on it,
:func:`open_plugin` checks what it returned: the members, ``len`` against ``meta``, and the
first and last pairs' batch: its keys, dtypes (``rgb`` uint8, ``depth`` int16 code, ``gt``
uint8), shapes (CHW at the spec's size, one row per index), ``index`` and ``has_gt`` against
what ``batch`` returns. Anything a plug-in raises, ``SystemExit`` and import errors included,
is caught at this boundary (and in every later ``batch``, :class:`CheckedStore`): the user gets
one paragraph naming the plug-in, what it violated and where the contract is documented.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from solo_rgbd.data.decode import DecodeSpec
from solo_rgbd.data.pairstore import PairMeta, PairStore, StoreView
from solo_rgbd.errors import ConfigError, DataError

CONTRACT = "solo_rgbd/data/pairstore.py (PairStore) and the README's 'Writing a store'"
#: store names of solo-rgbd's own, which a plug-in may not take
BUILT_IN = ("auto", "ram", "disk", "litdata", "folder")
_CAUGHT = (Exception, SystemExit)


def _broken(name: str, what: str) -> DataError:
    return DataError(
        f"store plug-in {name} {what}. Nothing was trained on it; fix the plug-in (the "
        f"contract: {CONTRACT}) or choose another data.format."
    )


def open_plugin(kind: str, ep: Any, spec: DecodeSpec) -> PairStore:
    """The store the entry point ``ep`` named ``kind`` opens for ``spec``, checked."""
    name = f"'{kind}' ({getattr(ep, 'value', ep)})"
    if kind in BUILT_IN:
        raise ConfigError(
            f"the store plug-in {name} takes the name of solo-rgbd's built-in store '{kind}', "
            "so it would never be used; rename its entry point in the group solo_rgbd.stores."
        )
    try:
        open_fn: Callable[[DecodeSpec], Any] = ep.load()
    except _CAUGHT as exc:
        raise _broken(name, f"cannot be imported ({type(exc).__name__}: {exc})") from None
    try:
        store = open_fn(spec)
    except (DataError, ConfigError):
        raise  # the plug-in's own paragraph for the user
    except _CAUGHT as exc:
        raise _broken(name, f"failed to open the data ({type(exc).__name__}: {exc})") from None
    check_store(store, spec, name)
    return CheckedStore(store, name)


def check_store(store: Any, spec: DecodeSpec, name: str) -> None:
    """Raise a :class:`DataError` naming the first way ``store`` breaks the contract."""
    if not isinstance(store, PairStore):
        missing = [
            m
            for m in ("meta", "has_gt", "device", "__len__", "batch", "subset", "materialize")
            if not hasattr(store, m)
        ]
        raise _broken(name, f"returned {type(store).__name__}, which lacks {', '.join(missing)}")
    try:
        n, meta, has_gt = len(store), store.meta, store.has_gt
    except _CAUGHT as exc:
        what = f"fails to give its length or meta ({type(exc).__name__}: {exc})"
        raise _broken(name, what) from None
    if not isinstance(n, int) or n < 1:
        raise _broken(name, f"says it holds {n!r} pairs; a store holds at least one")
    if not isinstance(meta, PairMeta) or len(meta.stems) != n:
        count = len(meta.stems) if isinstance(meta, PairMeta) else type(meta).__name__
        raise _broken(name, f"says len {n}, but its meta names {count} pairs")
    if not isinstance(has_gt, bool):
        raise _broken(name, f"gives has_gt={has_gt!r}, not True or False")
    idx = [0, n - 1] if n > 1 else [0]
    try:
        batch = store.batch(torch.tensor(idx))
    except _CAUGHT as exc:
        raise _broken(name, f"fails on batch({idx}) ({type(exc).__name__}: {exc})") from None
    _check_batch(batch, idx, has_gt, spec.size, name)


def _check_batch(batch: Any, idx: list[int], has_gt: bool, size: int, name: str) -> None:
    if not isinstance(batch, dict):
        raise _broken(name, f"returned {type(batch).__name__} from batch(), not a dict")
    want = {"rgb", "depth", "index"} | ({"gt"} if has_gt else set())
    if set(batch) != want:
        raise _broken(
            name,
            f"returned the keys {sorted(batch)} from batch({idx}) with has_gt={has_gt}; "
            f"expected {sorted(want)}",
        )
    b = len(idx)
    layout = {"rgb": (torch.uint8, 3), "depth": (torch.int16, 1), "gt": (torch.uint8, 1)}
    for key, (dtype, chans) in layout.items():
        if key not in batch:
            continue
        t = batch[key]
        shape = (b, chans, size, size)
        if not isinstance(t, torch.Tensor) or t.dtype != dtype or tuple(t.shape) != shape:
            got = f"{t.dtype} {tuple(t.shape)}" if isinstance(t, torch.Tensor) else type(t)
            raise _broken(
                name, f"returned {key} as {got} for batch({idx}); expected {dtype} {shape}"
            )
    index = batch["index"]
    if not isinstance(index, torch.Tensor) or index.tolist() != idx:
        raise _broken(name, f"returned index {index!r} for batch({idx}); expected {idx}")


class CheckedStore:
    """A plug-in's store whose every ``batch`` failure is named as the plug-in's."""

    def __init__(self, store: PairStore, name: str) -> None:
        self.store, self.name = store, name

    @property
    def meta(self) -> PairMeta:
        return self.store.meta

    @property
    def has_gt(self) -> bool:
        return self.store.has_gt

    @property
    def device(self) -> torch.device:
        return self.store.device

    def __len__(self) -> int:
        return len(self.store)

    def batch(self, idx: Sequence[int] | torch.Tensor) -> dict[str, torch.Tensor]:
        try:
            return self.store.batch(idx)
        except _CAUGHT as exc:
            raise _broken(self.name, f"failed on a batch ({type(exc).__name__}: {exc})") from None

    def subset(self, idx: Sequence[int]) -> StoreView:
        return StoreView(self, torch.as_tensor(list(idx), dtype=torch.long))

    def materialize(self, device: str | torch.device = "cpu"):
        return StoreView(self, torch.arange(len(self))).materialize(device)
