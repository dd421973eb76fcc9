"""Serialising into host memory kept between saves, and writing it to disk past the page cache.

A run writes a checkpoint of the same size again and again. ``torch.save`` into a file puts
every byte through the page cache, and a new file takes new pages: on the project's 2-core VM
a 135 MB checkpoint took 320 ms into a new file against 20 ms over a file's cached pages, and
background writes cost the step loop most of that CPU time (``bench/ckpt_stall.py``,
``docs/benchmarks.md``). Here the bytes go into a :class:`HostBuffer` whose pages are touched
once, at the first save, and :func:`write_out` hands them to the disk with ``O_DIRECT``
(no page cache: the kernel copies nothing, and the write waits for the device, not the CPU);
the caller fsyncs (:meth:`~solo_rgbd.utils.atomic.RecycledFile.commit`). Where a file
system refuses ``O_DIRECT`` (tmpfs, some network and FUSE file systems) the same bytes are
written through the page cache. The file's bytes are those of
``torch.save`` into a file object (:func:`~solo_rgbd.utils.atomic.torch_save_bytes`).
"""

from __future__ import annotations

import errno
import mmap
import os
from pathlib import Path
from typing import Any

ALIGN = 4096  # O_DIRECT's alignment of offsets, lengths and memory (a multiple of 512)
_CHUNK = 8 << 20
_GRAIN = 1 << 20
_NO_DIRECT = {errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP}
# private: a shared anonymous mapping is a file of fixed size underneath, and grown by mremap it
# raises SIGBUS past the old end
_PRIVATE = getattr(mmap, "MAP_PRIVATE", 0) | getattr(mmap, "MAP_ANONYMOUS", 0)


def _round_up(n: int, to: int) -> int:
    return (n + to - 1) // to * to


class HostBuffer:
    """A growable, page-aligned block of anonymous memory written like a file (``write``,
    ``flush``): what ``torch.save`` serialises into. Its pages stay mapped between saves, so
    a save of the same size touches no new memory; pages reserved but never written cost
    nothing. :meth:`close` unmaps it (a later write maps it again)."""

    def __init__(self) -> None:
        self._map: mmap.mmap | None = None
        self.nbytes = 0  # bytes written since the last clear()

    @property
    def capacity(self) -> int:
        return len(self._map) if self._map is not None else 0

    def reserve(self, n: int) -> None:
        """Make room for ``n`` bytes (and the padding of a direct write), keeping the content."""
        need = _round_up(max(n, 1), _GRAIN)
        if need <= self.capacity:
            return
        if self._map is not None:
            try:  # Linux moves the pages themselves (mremap): nothing is copied or touched
                self._map.resize(need)
                return
            except (OSError, SystemError, TypeError, ValueError):
                pass  # elsewhere: a new mapping, and the content copied
        grown = mmap.mmap(-1, need, flags=_PRIVATE) if _PRIVATE else mmap.mmap(-1, need)
        if self._map is not None:
            grown[: self.nbytes] = self._map[: self.nbytes]
            self._map.close()
        self._map = grown

    def clear(self) -> None:
        self.nbytes = 0

    def write(self, data: Any) -> int:
        with memoryview(data) as view, view.cast("B") as src:
            end = self.nbytes + len(src)
            if end > self.capacity:
                self.reserve(max(end, 2 * self.capacity))
            assert self._map is not None
            self._map[self.nbytes : end] = src
            self.nbytes = end
            return len(src)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
        self._map, self.nbytes = None, 0

    def _span(self, n: int) -> memoryview:
        assert self._map is not None and n <= self.capacity
        return memoryview(self._map)[:n]


def stored_bytes(obj: Any) -> int:
    """The bytes of the tensor storages in ``obj`` (dicts, lists, tuples), each counted once:
    about what ``torch.save`` writes for a checkpoint."""
    import torch

    seen: dict[tuple, int] = {}
    todo = [obj]
    while todo:
        item = todo.pop()
        if isinstance(item, torch.Tensor):
            storage = item.untyped_storage()
            seen[(storage.device, storage.data_ptr())] = storage.nbytes()
        elif isinstance(item, dict):
            todo.extend(item.values())
        elif isinstance(item, (list, tuple)):
            todo.extend(item)
    return sum(seen.values())


def serialise(obj: Any, buffer: HostBuffer) -> None:
    """``torch.save(obj)`` into ``buffer`` (cleared first); room is reserved up front from the
    tensors' sizes, so the buffer grows once, not by doubling."""
    import torch

    buffer.clear()
    buffer.reserve(stored_bytes(obj) * 9 // 8 + (1 << 20))  # records' headers and alignment
    torch.save(obj, buffer)


def write_out(buffer: HostBuffer, path: str | os.PathLike[str]) -> None:
    """Write the buffer's bytes as the file ``path``, in place over an existing file (its
    blocks are reused) and cut to the new length; never through a symlink. ``O_DIRECT`` where
    the file system takes it, the page cache otherwise. Not fsynced: the caller's commit does
    that, once."""
    path = Path(path)
    n = buffer.nbytes
    flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    direct = getattr(os, "O_DIRECT", 0)
    fd = -1
    if direct:
        try:
            fd = os.open(path, flags | direct, 0o666)
        except OSError as exc:
            if exc.errno not in _NO_DIRECT:  # this file system has no O_DIRECT
                raise
    try:
        if fd >= 0:
            try:
                _write_all(fd, buffer, _round_up(n, ALIGN))  # padding is cut off below
            except OSError as exc:
                if exc.errno not in _NO_DIRECT:  # e.g. the device wants another alignment
                    raise
                os.close(fd)
                fd = -1
        if fd < 0:
            fd = os.open(path, flags, 0o666)
            _write_all(fd, buffer, n)
        os.ftruncate(fd, n)
    finally:
        if fd >= 0:
            os.close(fd)


def _write_all(fd: int, buffer: HostBuffer, n: int) -> None:
    buffer.reserve(n)  # the padding of a direct write lies inside the mapping
    with buffer._span(n) as data:
        pos = 0
        while pos < n:
            pos += os.write(fd, data[pos : min(n, pos + _CHUNK)])
