"""Steady-state pretraining throughput inside the real Lightning loop (issue 11).

    python bench/e2e.py [overrides ...]          # e.g. experiment=paper data.cache_device=cuda

Runs ``solo-rgbd pretrain`` with a timing callback and prints JSON:

- ``pairs_per_s``: batch size / mean time between consecutive batch ends, after ``--warmup``
  steps (data, views, forward, backward, optimizer, momentum, enqueue, logging: everything);
- ``views_ms`` and ``views_share``: the two paired views of a batch, timed separately (synced);
- ``host_syncs_per_step`` (CUDA only): synchronisations that ``torch.cuda.set_sync_debug_mode``
  reports during the timed steps, per step (steps that log metrics included);
- ``gpu_busy`` (CUDA only): CUDA kernel time / wall time over a few profiled steps;
- ``peak_memory_gib`` (CUDA only).

The first steps (compilation, cudnn autotuning, cache warm-up) are excluded.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings

import lightning.pytorch as pl
import torch


class Timer(pl.Callback):
    def __init__(self, warmup: int, steps: int, profile: int) -> None:
        self.warmup, self.steps, self.profile = warmup, steps, profile
        self.ends: list[float] = []
        self.syncs = 0
        self.prof = None
        self.gpu_busy: float | None = None
        self.batch_size = 0

    def _cuda(self, pl_module) -> bool:
        return pl_module.device.type == "cuda"

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.batch_size = int(batch["rgb"].shape[0])
        step = len(self.ends)
        if self._cuda(pl_module) and step == self.warmup:
            torch.cuda.set_sync_debug_mode("warn")
        if self._cuda(pl_module) and step == self.warmup + self.steps and self.profile:
            self.prof = torch.profiler.profile(
                activities=[torch.profiler.ProfilerActivity.CUDA]
            ).__enter__()
            self.prof_start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._cuda(pl_module):
            torch.cuda.synchronize()
        self.ends.append(time.perf_counter())
        step = len(self.ends)
        if self._cuda(pl_module) and step == self.warmup + self.steps:
            torch.cuda.set_sync_debug_mode(0)
        if self.prof is not None and step == self.warmup + self.steps + self.profile:
            wall = time.perf_counter() - self.prof_start
            self.prof.__exit__(None, None, None)
            kernel_us = sum(e.device_time_total for e in self.prof.key_averages())
            self.gpu_busy = kernel_us / 1e6 / wall
            self.prof = None
        if step >= self.warmup + self.steps + self.profile:
            trainer.should_stop = True


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--profile", type=int, default=5, help="profiled steps (CUDA only)")
    a, overrides = p.parse_known_args()
    from solo_rgbd.augment.paired import PairedAugment, augment_config_from
    from solo_rgbd.commands.pretrain import run_pretrain
    from solo_rgbd.config import compose
    from solo_rgbd.engine.quiet import set_verbosity

    set_verbosity(False)
    out = tempfile.mkdtemp(prefix="solo_rgbd_e2e_")
    cfg = compose(
        "pretrain",
        ["trainer.enable_progress_bar=false", f"output_dir={out}", "run_name=e2e", *overrides],
    )
    timer = Timer(a.warmup, a.steps, a.profile)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_pretrain(cfg, [timer])
    syncs = sum("synchroniz" in str(w.message) for w in caught)
    ends = timer.ends[a.warmup : a.warmup + a.steps + 1]
    step_s = (ends[-1] - ends[0]) / max(1, len(ends) - 1)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    aug = PairedAugment(augment_config_from(cfg.augmentations)).to(dev)
    size = int(cfg.data.image_size)
    rgb = torch.randint(0, 256, (timer.batch_size, 3, size, size), dtype=torch.uint8, device=dev)
    depth = torch.randint(-32768, 32767, (timer.batch_size, 1, size, size), device=dev)
    depth = depth.to(torch.int16)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    aug(rgb, depth)
    sync()
    t0 = time.perf_counter()
    for _ in range(10):
        aug(rgb, depth)
    sync()
    views_s = (time.perf_counter() - t0) / 10
    cuda = dev.type == "cuda"
    print(
        json.dumps(
            {
                "device": torch.cuda.get_device_name() if cuda else "cpu",
                "batch": timer.batch_size,
                "steps_timed": len(ends) - 1,
                "step_ms": round(step_s * 1e3, 2),
                "pairs_per_s": round(timer.batch_size / step_s, 1),
                "views_ms": round(views_s * 1e3, 2),
                "views_share": round(views_s / step_s, 3),
                "host_syncs_per_step": round(syncs / a.steps, 2) if cuda else None,
                "gpu_busy": round(timer.gpu_busy, 3) if timer.gpu_busy is not None else None,
                "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)
                if cuda
                else None,
                "overrides": overrides,
            }
        )
    )
    sys.stdout.flush()
    os.environ.pop("SOLO_RGBD_RUN_DIR", None)


if __name__ == "__main__":
    main()
