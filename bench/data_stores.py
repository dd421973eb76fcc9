"""Where the decoded pairs live: RAM, the shared disk cache, LitData shards.

    python bench/data_stores.py [--n 256] [--size 56] [--batch 32] [--ranks 1 2]

At the quick preset's data (256 synthetic pairs, 56 px, batch 32) by default. Prints JSON:

- ``ranks``: for 1 and 2 gloo processes on this machine and each store, the seconds to have
  the pairs ready (decode, or wait and map), the pairs each rank decoded, and each rank's
  private (RssAnon) memory growth while holding the set and after one epoch of batches;
- ``loader``: pairs/s of the training loader (resumable sampler + gather) from each store,
  one process, the files already decoded / packed (page cache warm);
- ``pack_s``: the seconds ``solo-rgbd data pack`` took (1 worker);
- ``projection_1m``: bytes per pair, the disk size of 1 M pairs at 256 px, and the one-time
  decode of 1 M pairs at this machine's measured rate per core.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORKER = r"""
import json, os, sys, time
import torch, torch.distributed as dist

def anon():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon"):
            return int(line.split()[1]) * 1024

def main(rank, world, root, store, size, out, port):
    size = int(size)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    from solo_rgbd.data import decode
    from solo_rgbd.data.decode import DecodeSpec, RootSpec
    from solo_rgbd.data.store import open_store
    decoded, real = [0], decode.load_pair
    def counted(*args, **kwargs):  # pairs decoded by this process
        decoded[0] += 1
        return real(*args, **kwargs)
    decode.load_pair = counted
    dist.barrier()
    before, t = anon(), time.perf_counter()
    pairs = open_store(DecodeSpec((RootSpec(root),), size, threads=1), store, copies=world,
                       cache_dir=os.path.join(out, "decoded"))
    ready = time.perf_counter() - t
    held = anon() - before
    for s in range(0, len(pairs) - 31, 32):
        pairs.batch(list(range(s, s + 32)))
    row = {"rank": rank, "ready_s": round(ready, 3), "decoded": decoded[0],
           "anon_held_mb": round(held / 2**20, 1),
           "anon_epoch_mb": round((anon() - before) / 2**20, 1)}
    json.dump(row, open(os.path.join(out, f"{store}-{world}-{rank}.json"), "w"))
    dist.barrier()
    dist.destroy_process_group()

if __name__ == "__main__":
    torch.set_num_threads(1)
    world = int(sys.argv[1])
    torch.multiprocessing.spawn(main, args=(world, *sys.argv[2:]), nprocs=world)
"""


def _ranks(tmp: Path, root: Path, packed: Path, size: int, world: int, port: int) -> dict:
    script = tmp / "worker.py"
    script.write_text(WORKER)
    out = {}
    for store in ("ram", "disk", "litdata"):
        work = tmp / f"w-{store}-{world}"
        work.mkdir()
        src = packed if store == "litdata" else root
        cmd = [sys.executable, str(script), str(world), str(src), store, str(size), str(work)]
        proc = subprocess.run([*cmd, str(port)], capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(proc.stderr[-3000:])
        port += 1
        out[store] = [
            json.loads((work / f"{store}-{world}-{r}.json").read_text()) for r in range(world)
        ]
    return out


def _loader_rate(root: Path, packed: Path, size: int, batch: int, tmp: Path) -> dict:
    from solo_rgbd.data.decode import DecodeSpec, RootSpec
    from solo_rgbd.data.sources import train_loader
    from solo_rgbd.data.store import open_store

    folder, pack = (
        DecodeSpec((RootSpec(str(root)),), size),
        DecodeSpec((RootSpec(str(packed)),), size),
    )
    stores = {
        "ram": open_store(folder, "ram"),
        "disk": open_store(folder, "disk", cache_dir=tmp / "decoded"),
        "litdata": open_store(pack, "litdata"),
    }
    rates = {}
    for _ in range(2):  # alternate, keep the better of two passes
        for name, pairs in stores.items():
            loader = train_loader(pairs, batch, seed=0)
            t, n = time.perf_counter(), 0
            for epoch in range(3):
                loader.epoch_sampler.set_epoch(epoch)
                for b in loader:
                    n += len(b["index"])
            rates[name] = max(rates.get(name, 0.0), n / (time.perf_counter() - t))
    return {k: round(v) for k, v in rates.items()}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=256)
    p.add_argument("--size", type=int, default=56)
    p.add_argument("--stored", type=int, default=64, help="synthetic image size on disk")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    args = p.parse_args()
    import torch

    from solo_rgbd.data.decode import RootSpec
    from solo_rgbd.data.disk_cache import decoded_bytes
    from solo_rgbd.data.shards import pack
    from solo_rgbd.data.synthetic import write_synthetic

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        os.environ["SOLO_RGBD_CACHE"] = str(tmp / "cache")
        root = write_synthetic(tmp / "ds", n=args.n, size=args.stored)
        t = time.perf_counter()
        packed = pack([RootSpec(str(root))], tmp / "packed", args.size, progress=False)
        pack_s = time.perf_counter() - t
        ranks = {w: _ranks(tmp, root, packed, args.size, w, 29600 + 10 * w) for w in args.ranks}
        loader = _loader_rate(root, packed, args.size, args.batch, tmp)
    one = ranks[args.ranks[0]]["ram"][0]
    per_core = args.n / max(one["ready_s"], 1e-9)  # 1 decode thread
    per_pair = decoded_bytes(1, 256, with_gt=False)
    print(
        json.dumps(
            {
                "n": args.n,
                "size": args.size,
                "ranks": ranks,
                "loader_pairs_per_s": loader,
                "pack_s": round(pack_s, 2),
                "projection_1m": {
                    "bytes_per_pair_256px": per_pair,
                    "disk_gb_1m_256px": round(per_pair * 1e6 / 1e9, 1),
                    "decode_pairs_per_s_per_core_at_this_size": round(per_core),
                },
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
