"""Two paired views of a cached batch: the kornia pipeline against the fast kernels.

    python bench/views.py [--device cuda] [--batch 64] [--size 256] [--crop 224]

Prints JSON: ms per call (two views) for each backend, their ratio, and the share of a
reference step time if --step-ms is given.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from solo_rgbd.augment.paired import AugmentConfig, PairedAugment
from solo_rgbd.data.decode import encode_depth


def timed(fn, reps: int, sync) -> float:
    fn()
    sync()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    sync()
    return (time.perf_counter() - start) / reps * 1e3


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--crop", type=int, default=224)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--step-ms", type=float, default=None)
    a = p.parse_args()
    dev = torch.device(a.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    rgb = torch.randint(0, 256, (a.batch, 3, a.size, a.size), dtype=torch.uint8, device=dev)
    depth = encode_depth(torch.rand(a.batch, 1, a.size, a.size, device=dev))
    out = {"device": str(dev), "batch": a.batch, "size": a.size, "crop": a.crop}
    for backend in ("kornia", "fast"):
        aug = PairedAugment(AugmentConfig(backend=backend, crop_size=a.crop)).to(dev)
        out[f"{backend}_ms"] = round(timed(lambda aug=aug: aug(rgb, depth), a.reps, sync), 2)
    out["speedup"] = round(out["kornia_ms"] / out["fast_ms"], 2)
    if a.step_ms:
        out["fast_share_of_step"] = round(out["fast_ms"] / a.step_ms, 3)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
