"""Checkpoints and exports written in a background thread, so the step loop does not wait.

:class:`AsyncAtomicCheckpointIO` is Lightning's ``AsyncCheckpointIO`` around
:class:`~solo_rgbd.engine.checkpoint.AtomicCheckpointIO` (a new file, fsync, rename), with
three changes that keep the guarantees of a synchronous save:

- **a consistent snapshot, each storage once.** The step loop goes on changing the weights in
  place, so the checkpoint is copied to host memory before the call returns. Lightning clones
  tensor by tensor, which copies (and writes) a storage shared by several tensors once per
  tensor; here every storage is copied once and the tensors are rebuilt as views of the
  copies, so the file holds each tensor once, as ``torch.save`` of the live state would. The
  copies of a GPU's tensors go into pinned host buffers kept from the previous save.
- **one writer, in order.** Writes run one at a time on one thread, in the order they were
  asked for. :meth:`submit` queues other writes of data already copied off the model (the
  encoder export, queued before the epoch's checkpoint, so a checkpoint on disk always has its
  export on disk). A new write first waits for the previous write of its kind, so memory holds
  at most one snapshot of each.
- **errors and exits.** An error of a background write is raised at the next save, at
  :meth:`wait` or at teardown, and the writes queued behind a failed one are skipped (a
  checkpoint never lands after its export failed); :meth:`wait` is what a preemption signal
  calls before the process exits, so ``last.ckpt`` names the step that just finished.

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


def host_snapshot(obj: Any, storages: dict | None = None, pool: dict | None = None) -> Any:
    """A copy of ``obj`` on the host that shares nothing with it; tensors that share a storage
    in ``obj`` share one copied storage in the result. With ``pool`` (a dict kept between
    calls) storages are copied into the buffers of the previous call where the sizes match."""
    storages = {} if storages is None else storages
    if isinstance(obj, torch.Tensor):
        return _copy_tensor(obj, storages, pool)
    if isinstance(obj, Mapping):
        out = copy.copy(obj)  # keeps the mapping's type (OrderedDict, AttributeDict, ...)
        for key in obj:
            out[key] = host_snapshot(obj[key], storages, pool)
        return out
    if isinstance(obj, list):
        return [host_snapshot(v, storages, pool) for v in obj]
    if isinstance(obj, tuple):
        items = [host_snapshot(v, storages, pool) for v in obj]
        return type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)
    try:
        return copy.deepcopy(obj)
    except Exception:  # an object that cannot be copied is written as it is now
        return obj


def _copy_tensor(t: torch.Tensor, storages: dict, pool: dict | None) -> torch.Tensor:
    t = t.detach()
    if t.layout != torch.strided or t.is_quantized:
        return t.to("cpu", copy=True)
    storage = t.untyped_storage()
    key = (storage.device, storage.data_ptr(), storage.nbytes())
    copied = storages.get(key)
    if copied is None:
        copied = _copy_storage(storage, key, pool)
        storages[key] = copied
    view = torch.empty((0,), dtype=t.dtype)
    return view.set_(copied, t.storage_offset(), t.size(), t.stride())


def _copy_storage(storage: torch.UntypedStorage, key: tuple, pool: dict | None):
    if pool is None:
        return storage.cpu() if storage.device.type != "cpu" else storage.clone()
    buffer = pool.get(key)
    if buffer is None or buffer.nbytes() != storage.nbytes():
        pinned = storage.device.type == "cuda"
        buffer = torch.empty(storage.nbytes(), dtype=torch.uint8, pin_memory=pinned)
        buffer = buffer.untyped_storage()
        pool[key] = buffer
    dst = torch.empty((0,), dtype=torch.uint8).set_(buffer)
    src = torch.empty((0,), dtype=torch.uint8, device=storage.device).set_(storage)
    dst.copy_(src, non_blocking=storage.device.type == "cuda")
    return buffer


class AsyncAtomicCheckpointIO(AsyncCheckpointIO):
    """Atomic checkpoints and exports, written by one background thread, in order (module doc)."""

    def __init__(self) -> None:
        super().__init__(AtomicCheckpointIO())
        self._pending: list[tuple[str, Future]] = []  # (kind, write), oldest first
        self._failed: BaseException | None = None  # set by the thread; later writes skip
        self._pool: dict = {}  # host buffers of the last checkpoint snapshot, reused

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        self._wait_for("checkpoint")  # its buffers are free again; raises a failed write
        used: dict = {}
        snapshot = host_snapshot(checkpoint, used, self._pool)
        if any(key[0].type == "cuda" for key in used):
            torch.cuda.synchronize()  # the non-blocking copies into pinned buffers are done
        self._pool = {key: self._pool[key] for key in used if key in self._pool}
        io = self.checkpoint_io
        assert io is not None
        self._queue("checkpoint", lambda: io.save_checkpoint(snapshot, path, storage_options))

    def submit(self, kind: str, write: Callable[[], Any]) -> None:
        """Queue ``write`` (of data the caller already copied) behind the writes in flight,
        after waiting for the previous write of the same ``kind``."""
        self._wait_for(kind)
        self._queue(kind, write)

    def _queue(self, kind: str, write: Callable[[], Any]) -> None:
        self._ensure_setup()
        assert self._executor is not None

        def run() -> None:
            if self._failed is not None:  # an earlier write failed: nothing queued behind lands
                return
            try:
                write()
            except BaseException as exc:
                self._failed = exc
                raise

        self._pending.append((kind, self._executor.submit(run)))

    def _wait_for(self, kind: str) -> None:
        """Block until the newest pending write of ``kind`` (and all before it) is done."""
        last = max((i for i, (k, _) in enumerate(self._pending) if k == kind), default=-1)
        self._settle(last + 1)

    def _settle(self, n: int) -> None:
        """Wait for the ``n`` oldest pending writes; on a failed write, raise its error once the
        writes queued behind it have been skipped."""
        done, self._pending = self._pending[:n], self._pending[n:]
        for _, future in done:
            future.exception()  # waits; the thread keeps the error in self._failed
        if self._failed is not None:
            for _, future in self._pending:
                future.exception()  # these skip at once
            self._pending = []
            exc, self._failed = self._failed, None
            raise exc

    def wait(self) -> None:
        """Block until every write in flight is on disk; raise the first error, if one failed."""
        self._settle(len(self._pending))

    def teardown(self) -> None:
        try:
            self.wait()
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None
