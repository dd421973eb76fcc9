"""Checkpoints and exports written in a background thread, so the step loop does not wait.

:class:`AsyncAtomicCheckpointIO` is Lightning's ``AsyncCheckpointIO`` around
:class:`~solo_rgbd.engine.checkpoint.AtomicCheckpointIO` (a new file, fsync, rename), with
what keeps the guarantees of a synchronous save:

- **a consistent snapshot on the host, each storage once.** The step loop goes on changing the
  weights in place, so the checkpoint is copied to host memory before the call returns.
  Lightning clones tensor by tensor on their device; here every storage is copied to the host
  once and the tensors are rebuilt as views of the copies, so the file holds each tensor once,
  as ``torch.save`` of the live state would, and the GPU holds no second copy.
- **one write in flight, in order.** A new write (a checkpoint, or through :meth:`submit` the
  encoder export, which comes before its epoch's checkpoint) first waits for the one in
  flight, so a checkpoint on disk always has its export on disk.
- **errors and exits.** An error of a background write is raised at the next write, at
  :meth:`wait` or at teardown, so nothing is written after a failed write. :meth:`wait` is what
  a preemption signal calls before the process exits, so ``last.ckpt`` names the step that
  just finished.

A kill at any moment leaves the previous ``last.ckpt`` and export (each is renamed into place
atomically) and at most one temporary of each, which the next run of the folder removes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
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
        t = obj.detach()
        if t.layout != torch.strided or t.is_quantized:
            return t.to("cpu", copy=True)
        storage = t.untyped_storage()
        key = (storage.device, storage.data_ptr(), storage.nbytes())
        if key not in storages:
            storages[key] = storage.cpu() if storage.device.type != "cpu" else storage.clone()
        return torch.empty((0,), dtype=t.dtype).set_(
            storages[key], t.storage_offset(), t.size(), t.stride()
        )
    if isinstance(obj, Mapping):
        out = copy.copy(obj)  # keeps the mapping's type (OrderedDict, AttributeDict, ...)
        for key in obj:
            out[key] = host_snapshot(obj[key], storages)
        return out
    if isinstance(obj, (list, tuple)):
        items = [host_snapshot(v, storages) for v in obj]
        if isinstance(obj, list):
            return items
        return type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)
    try:
        return copy.deepcopy(obj)
    except Exception:  # an object that cannot be copied is written as it is now
        return obj


class AsyncAtomicCheckpointIO(AsyncCheckpointIO):
    """Atomic checkpoints and exports, written by one background thread, one at a time."""

    def __init__(self) -> None:
        super().__init__(AtomicCheckpointIO())
        self._in_flight: Future | None = None

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        self.wait()  # memory holds one snapshot; a failed write is raised here
        snapshot = host_snapshot(checkpoint)
        io = self.checkpoint_io
        assert io is not None
        self.submit(lambda: io.save_checkpoint(snapshot, path, storage_options))

    def submit(self, write: Callable[[], Any]) -> None:
        """Run ``write`` (of data the caller already copied) on the writer thread, after the
        write in flight."""
        self.wait()
        self._ensure_setup()
        assert self._executor is not None
        self._in_flight = self._executor.submit(write)

    def wait(self) -> None:
        """Block until the write in flight is on disk; raise its error if it failed."""
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None:
            in_flight.result()

    def teardown(self) -> None:
        try:
            self.wait()
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None
