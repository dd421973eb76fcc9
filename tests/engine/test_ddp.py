"""Two CPU processes (gloo) against one process, at the same global batch of 16
(data.batch_size is global: 8 per process)."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

# A backbone without batch statistics (ConvNeXt's LayerNorm) and deterministic views, so the
# only difference between the runs is the order of floating-point sums across processes.
COMMON = [
    "backbone=tiny",
    "backbone.name=test_convnext",
    "data.synthetic.n=32",
    "data.synthetic.n_test=8",
    "data.synthetic.size=32",
    "data.image_size=32",
    "augmentations.crop_size=32",
    "augmentations.min_scale=1.0",
    "augmentations.hflip_prob=0",
    "augmentations.rgb.color_jitter_prob=0",
    "augmentations.rgb.grayscale_prob=0",
    "augmentations.rgb.blur_prob=0",
    "trainer.enable_progress_bar=false",
    "trainer.accelerator=cpu",
    "log_every_n_steps=1",
    "method_kwargs.schedule=intra_only",  # the fusion encoder never gets a gradient
    "method_kwargs.stage1_epochs=1",
    "method_kwargs.stage2_epochs=1",
    "method_kwargs.queue_size=100",
    # shuffle-BN on: across the two ranks (gather, permute, run, gather, un-permute) and in 2
    # groups on one process; without batch statistics it must not change a single key
    "method_kwargs.shuffle_bn=true",
]
TOLERANCE = 1e-4  # max |delta| over every weight, momentum weight and queue entry


def _run(out: Path, *extra: str) -> Path:
    env = {**os.environ, "SOLO_RGBD_CACHE": str(out.parent / "cache")}
    env.pop("SOLO_RGBD_RUN_DIR", None)
    cmd = [sys.executable, "-m", "solo_rgbd.cli", "pretrain", *COMMON, f"output_dir={out}", *extra]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_two_processes_equal_one_at_the_same_global_batch(tmp_path):
    one = _run(tmp_path / "one", "data.batch_size=16", "run_name=r")
    # plain strategy=ddp works for mbcf: the runner turns on find_unused_parameters
    two = _run(
        tmp_path / "two",
        "data.batch_size=16",
        "trainer.devices=2",
        "trainer.strategy=ddp",
        "run_name=r",
    )
    assert sorted(p.name for p in (tmp_path / "two" / "mbcf").iterdir()) == ["r"]  # one folder
    a = torch.load(one / "mbcf/r/checkpoints/last.ckpt", weights_only=True)
    b = torch.load(two / "mbcf/r/checkpoints/last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 4  # 2 epochs x 32 / 16
    sa, sb = a["state_dict"], b["state_dict"]
    # every step, the queues received world x batch = 16 keys: 4 x 16 = 64 entries written
    assert sa["queues.rgb.ptr"].item() == sb["queues.rgb.ptr"].item() == 64
    diff = max((sa[k].double() - sb[k].double()).abs().max().item() for k in sa)
    assert diff < TOLERANCE
    # both ranks' RNG states are in the checkpoint, for an exact resume under DDP
    assert len(b["callbacks"]["RunCheckpoint"]["rng_per_rank"]) == 2
    with open(two / "mbcf/r/logs/metrics.csv") as f:
        assert len([r for r in csv.DictReader(f) if r.get("loss")]) == 4  # rank 0 writes
    # the same two processes from LitData shards of the same pairs: the same pairs per step
    # (the library's sampler gives each rank its share), so the same weights
    (synthetic,) = [p for p in (tmp_path / "cache" / "synthetic").glob("*-train-*") if p.is_dir()]
    packed = tmp_path / "packed"
    cmd = [sys.executable, "-m", "solo_rgbd.cli", "data", "pack", str(synthetic), str(packed)]
    pack = subprocess.run([*cmd, "--size", "32", "--quiet"], capture_output=True, text=True)
    assert pack.returncode == 0, pack.stderr[-3000:]
    shards = _run(
        tmp_path / "shards",
        "data.batch_size=16",
        "trainer.devices=2",
        "trainer.strategy=ddp",
        "run_name=r",
        "data.format=litdata",
        f"data.path={packed}",
    )
    c = torch.load(shards / "mbcf/r/checkpoints/last.ckpt", weights_only=True)["state_dict"]
    assert max((sb[k].double() - c[k].double()).abs().max().item() for k in sb) < TOLERANCE
