"""Checkpoints written in a background thread, so the step loop does not wait for the disk.

:class:`AsyncAtomicCheckpointIO` is Lightning's ``AsyncCheckpointIO`` around
:class:`~solo_rgbd.engine.checkpoint.AtomicCheckpointIO` (temporary file, fsync, rename), with
three changes that keep the guarantees of a synchronous save:

- **a consistent snapshot.** The step loop goes on changing the weights in place, so the
  checkpoint is copied to host memory before the call returns. Lightning clones tensor by
  tensor, which writes a storage shared by several tensors once per tensor; here every storage
  is copied once and the tensors are rebuilt as views of the copies, so the file holds each
  tensor once, as ``torch.save`` of the live state would. Containers are rebuilt and other
  leaves deep-copied, so nothing the loop mutates later leaks into the file.
- **one write in flight.** A new save first waits for the previous one (that wait is the only
  stall the loop sees, and only when the disk is slower than the checkpoint interval); memory
  holds at most one snapshot, and files are renamed into place in order.
- **errors and exits.** An error of the background write is raised at the next save, at
  :meth:`wait` or at teardown; :meth:`wait` is what a preemption signal calls before the
  process exits, so ``last.ckpt`` names the step that just finished.

A kill at any moment leaves the previous ``last.ckpt`` (the rename is atomic) and at most one
``.last.ckpt.*.tmp``, which the next run of the folder removes.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any

import torch
from lightning.pytorch.plugins.io import AsyncCheckpointIO

from solo_rgbd.engine.checkpoint import AtomicCheckpointIO


def host_snapshot(obj: Any, storages: dict | None = None) -> Any:
    """A copy of ``obj`` on the host that shares nothing with it; tensors that share a storage
    in ``obj`` share one copied storage in the result."""
    storages = {} if storages is None else storages
    if isinstance(obj, torch.Tensor):
        return _copy_tensor(obj, storages)
    if isinstance(obj, Mapping):
        out = copy.copy(obj)  # keeps the mapping's type (OrderedDict, AttributeDict, ...)
        for key in obj:
            out[key] = host_snapshot(obj[key], storages)
        return out
    if isinstance(obj, list):
        return [host_snapshot(v, storages) for v in obj]
    if isinstance(obj, tuple):
        items = [host_snapshot(v, storages) for v in obj]
        return type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)
    try:
        return copy.deepcopy(obj)
    except Exception:  # an object that cannot be copied is written as it is now
        return obj


def _copy_tensor(t: torch.Tensor, storages: dict) -> torch.Tensor:
    t = t.detach()
    if t.layout != torch.strided or t.is_quantized:
        return t.to("cpu", copy=True)
    storage = t.untyped_storage()
    key = (storage.device, storage.data_ptr(), storage.nbytes())
    copied = storages.get(key)
    if copied is None:
        copied = storage.cpu() if storage.device.type != "cpu" else storage.clone()
        storages[key] = copied
    view = torch.empty((0,), dtype=t.dtype)
    return view.set_(copied, t.storage_offset(), t.size(), t.stride())


class AsyncAtomicCheckpointIO(AsyncCheckpointIO):
    """Atomic checkpoints, written by one background thread, one at a time (module doc)."""

    def __init__(self) -> None:
        super().__init__(AtomicCheckpointIO())
        self._future: Future | None = None
        #: seconds the calling thread spent in each save (snapshot + waiting for the previous)
        self.stalls: list[float] = []
        #: seconds each background write took (temporary file, fsync, rename)
        self.write_times: list[float] = []

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        start = time.perf_counter()
        self.wait()  # one snapshot in memory, files renamed in order; raises a failed write
        snapshot = host_snapshot(checkpoint)
        self._ensure_setup()
        assert self._executor is not None and self.checkpoint_io is not None
        io = self.checkpoint_io

        def write() -> None:
            began = time.perf_counter()
            io.save_checkpoint(snapshot, path, storage_options)
            self.write_times.append(time.perf_counter() - began)

        self._future = self._executor.submit(write)
        self.stalls.append(time.perf_counter() - start)

    def wait(self) -> None:
        """Block until the write in flight (if any) is on disk; raise its error, if it failed."""
        future, self._future = self._future, None
        if future is not None:
            future.result()

    def teardown(self) -> None:
        try:
            self.wait()
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None
