"""Pairs/s of the data pipeline: decode-once cache build, then load + two paired views.

    python bench/data_pipeline.py [--device cpu|cuda] [--n 256] [--batch 64] [--crop 224]

Prints the decoding rate (first epoch: files -> cached tensors) and the steady-state rate of
gathering a batch from the cache and making two paired MoCo v2 views (every later epoch).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch

from solo_rgbd.augment.paired import AugmentConfig, PairedAugment
from solo_rgbd.data.decode import DecodeSpec, RootSpec
from solo_rgbd.data.sources import index_loader
from solo_rgbd.data.store import open_store
from solo_rgbd.data.synthetic import write_synthetic


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--n", type=int, default=256)
    p.add_argument("--size", type=int, default=256, help="stored and cached image size")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--crop", type=int, default=224)
    p.add_argument("--batches", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        root = write_synthetic(f"{tmp}/ds", n=args.n, size=args.size)
        t_synth = time.perf_counter() - t0
        t0 = time.perf_counter()
        spec = DecodeSpec((RootSpec(str(root)),), args.size, threads=args.threads)
        cache = open_store(spec, "ram")
        t_decode = time.perf_counter() - t0
    cache = cache.materialize(args.device)
    aug = PairedAugment(AugmentConfig(crop_size=args.crop)).to(args.device)
    loader = index_loader(cache, args.batch, shuffle=True, drop_last=True)

    def run(batches: int) -> float:
        done = 0
        start = time.perf_counter()
        while done < batches:
            for batch in loader:
                rgb = batch["rgb"].to(args.device, non_blocking=True)
                depth = batch["depth"].to(args.device, non_blocking=True)
                views = aug(rgb, depth)
                done += 1
                if done >= batches:
                    break
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        assert views[0][0].shape[-1] == args.crop
        return time.perf_counter() - start

    run(2)  # warm-up (kernel selection)
    elapsed = run(args.batches)
    result = {
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
        "torch_threads": torch.get_num_threads(),
        "synth_pairs_per_s": round(args.n / t_synth, 1),
        "decode_pairs_per_s": round(args.n / t_decode, 1),
        "load_two_views_pairs_per_s": round(args.batches * args.batch / elapsed, 1),
        "batch": args.batch,
        "crop": args.crop,
        "cache_size": args.size,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
