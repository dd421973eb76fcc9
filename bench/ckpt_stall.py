"""How long the step loop stalls per checkpoint: synchronous against background writes.

    python bench/ckpt_stall.py RUN/checkpoints/last.ckpt [--rounds 3]

Loads a real checkpoint (any run's ``last.ckpt``) and saves it again into a temporary folder
beside it, alternating, through

- ``AtomicCheckpointIO`` (synchronous: serialise into its host buffer, write that into the
  spare file of the checkpoint before last past the page cache, fsync, swap the names, before
  returning; ``sync_stall_ms``),
- ``torch.save`` through the page cache into that spare, fsync, swap (how saves were written
  before the host buffer; ``page_cache_spare_sync_ms``),
- the same into a new temporary file renamed over the old one (before the spare was recycled;
  ``fresh_sync_stall_ms``),
- ``AsyncAtomicCheckpointIO(stage_here=True)`` (``checkpoint.async_save=auto`` on CPU: the
  loop serialises into the host buffer, a thread writes, fsyncs and swaps;
  ``cpu_auto_stall_ms``, and the thread's ``cpu_auto_write_ms``), and
- ``AsyncAtomicCheckpointIO`` (``checkpoint.async_save=auto`` on a GPU: a host copy of the
  state, then the same write in a background thread); the stall is the time until the call
  returns, the write time is how long the thread took. The stall is not the whole cost on CPU:
  the thread then takes a core from the training steps (``bench/overhead.py``).

A run pays the stall once per checkpoint (every epoch, plus ``every_n_steps`` /
``every_n_minutes``). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from solo_rgbd.engine.async_io import AsyncAtomicCheckpointIO
from solo_rgbd.engine.checkpoint import AtomicCheckpointIO
from solo_rgbd.engine.ckpt_info import breakdown, summary_line
from solo_rgbd.utils.atomic import RecycledFile, atomic_path, torch_save_bytes


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("ckpt")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    path = Path(args.ckpt)
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    sync_io, async_io = AtomicCheckpointIO(), AsyncAtomicCheckpointIO()
    staging_io = AsyncAtomicCheckpointIO(stage_here=True)
    sync_s, stall_s, fresh_s, staged_s, cached_s = [], [], [], [], []
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        target = Path(tmp) / "last.ckpt"
        for _ in range(args.rounds):
            start = time.perf_counter()
            sync_io.save_checkpoint(ckpt, target)
            sync_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            async_io.save_checkpoint(ckpt, target)
            stall_s.append(time.perf_counter() - start)
            async_io.wait()  # the next synchronous save does not compete with this write
            start = time.perf_counter()
            with atomic_path(target) as fresh:
                torch_save_bytes(ckpt, fresh)
            fresh_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            cached = RecycledFile(target)
            torch_save_bytes(ckpt, cached.spare)
            cached.commit()
            cached_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            staging_io.save_checkpoint(ckpt, target)
            staged_s.append(time.perf_counter() - start)
            staging_io.wait()
        async_io.teardown()
        staging_io.teardown()
    print(
        json.dumps(
            {
                "checkpoint": str(path),
                "size": summary_line(breakdown(ckpt)),
                "rounds": args.rounds,
                "sync_stall_ms": round(statistics.median(sync_s) * 1e3, 1),
                "page_cache_spare_sync_ms": round(statistics.median(cached_s) * 1e3, 1),
                "fresh_sync_stall_ms": round(statistics.median(fresh_s) * 1e3, 1),
                "cpu_auto_stall_ms": round(statistics.median(staged_s) * 1e3, 1),
                "cpu_auto_write_ms": round(statistics.median(staging_io.write_times) * 1e3, 1),
                "async_stall_ms": round(statistics.median(stall_s) * 1e3, 1),
                "async_write_ms": round(statistics.median(async_io.write_times) * 1e3, 1),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
