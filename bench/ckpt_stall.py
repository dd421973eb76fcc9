"""How long the step loop stalls per checkpoint: a synchronous save against a background one.

    python bench/ckpt_stall.py RUN/checkpoints/last.ckpt [--rounds 3]

Loads a real checkpoint (any run's ``last.ckpt``) and saves it again into a temporary folder
beside it, alternating, through

- ``AtomicCheckpointIO`` (``checkpoint.async_save=false``, the default on CPU: ``torch.save``
  into a new temporary file, fsync, rename, before returning; ``sync_stall_ms``), and
- ``AsyncAtomicCheckpointIO`` (``checkpoint.async_save=true``, the default on a GPU: a host
  copy of the state, then the same write on a background thread); the stall is the time until
  the call returns (``async_stall_ms``), the write time is how long the thread took
  (``async_write_ms``, timed by wrapping the writer here). On CPU the stall is not the whole
  cost: the thread then takes a core from the training steps (``bench/overhead.py``).

A run pays the stall once per checkpoint (docs/pretraining.md: the checkpoint policy). Prints
JSON.
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


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("ckpt")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    path = Path(args.ckpt)
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    sync_io, async_io = AtomicCheckpointIO(), AsyncAtomicCheckpointIO()
    writes: list[float] = []
    inner = async_io.checkpoint_io.save_checkpoint

    def timed(*a, **kw):
        start = time.perf_counter()
        inner(*a, **kw)
        writes.append(time.perf_counter() - start)

    async_io.checkpoint_io.save_checkpoint = timed
    sync_s, stall_s = [], []
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
        async_io.teardown()
    ms = lambda xs: round(statistics.median(xs) * 1e3, 1)  # noqa: E731
    result = {
        "checkpoint": str(path),
        "size": summary_line(breakdown(ckpt)),
        "rounds": args.rounds,
        "sync_stall_ms": ms(sync_s),
        "async_stall_ms": ms(stall_s),
        "async_write_ms": ms(writes),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
