"""Test helpers: open a store of some roots in one call, and count the pairs decoded."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from solo_rgbd.data import decode
from solo_rgbd.data.decode import DecodeSpec, RootSpec
from solo_rgbd.data.pairstore import PairStore
from solo_rgbd.data.store import open_store


def store_of(
    roots: Sequence[RootSpec],
    size: int,
    storage: str = "ram",
    cache_dir: str | Path | None = None,
    copies: int = 1,
    num_threads: int = 2,
    **spec: object,
) -> PairStore:
    """``open_store`` of ``roots`` at ``size`` (``spec``: the other DecodeSpec fields)."""
    return open_store(
        DecodeSpec(tuple(roots), size, threads=num_threads, **spec), storage, cache_dir, copies
    )


class DecodeCounter:
    """How many pairs this process decoded while it was installed (:func:`count_decodes`)."""

    def __init__(self) -> None:
        self.n = 0
        self._lock = threading.Lock()


@contextlib.contextmanager
def count_decodes() -> Iterator[DecodeCounter]:
    """Count the calls of the decoder of one pair (the test hook that replaced the production
    counter): ``with count_decodes() as c: ...; c.n``."""
    counter, real = DecodeCounter(), decode.load_pair

    def counted(*args, **kwargs):
        with counter._lock:
            counter.n += 1
        return real(*args, **kwargs)

    decode.load_pair = counted
    try:
        yield counter
    finally:
        decode.load_pair = real
