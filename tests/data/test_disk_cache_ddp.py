"""Two gloo processes on one machine share one decoded copy (data.cache=disk): the pairs are
decoded once in total, and the second rank's anonymous (private) memory does not grow by the
dataset's size, while with data.cache=ram it does (the measurement can tell them apart). The
figures are printed (pytest -s) for docs/benchmarks.md."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

WORKER = r"""
import json, os, sys
import torch, torch.distributed as dist

def rss():
    f = dict(l.split(":", 1) for l in open("/proc/self/status") if l.startswith("Rss"))
    return {k: int(v.split()[0]) * 1024 for k, v in f.items()}

def main(rank, root, storage, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=sys.argv[4])
    dist.init_process_group("gloo", rank=rank, world_size=2)
    from solo_rgbd.data import decode
    from solo_rgbd.data.decode import DecodeSpec, RootSpec
    from solo_rgbd.data.store import open_store
    decoded, real = [0], decode.load_pair
    def counted(*args, **kwargs):  # the test hook: pairs decoded by this process
        decoded[0] += 1
        return real(*args, **kwargs)
    decode.load_pair = counted
    before = rss()
    cache = open_store(DecodeSpec((RootSpec(root),), 128), storage, copies=2,
                       cache_dir=os.path.join(out, "decoded"))
    opened = rss()
    total = 0
    for start in range(0, len(cache), 32):  # read every pair, as an epoch does
        b = cache.batch(list(range(start, min(start + 32, len(cache)))))
        total += int(b["rgb"].max()) + int(b["depth"].min())  # touches every page
    after = rss()
    dist.barrier()
    row = {"rank": rank, "decoded": decoded[0], "n": len(cache), "sum": total,
           "anon_growth": after["RssAnon"] - before["RssAnon"], "file": after["RssFile"],
           "anon_growth_open": opened["RssAnon"] - before["RssAnon"],
           "bytes": cache.rgb.numel() + 2 * cache.depth.numel() + cache.gt.numel()}
    json.dump(row, open(os.path.join(out, f"{storage}-{rank}.json"), "w"))
    dist.destroy_process_group()

if __name__ == "__main__":
    torch.set_num_threads(1)
    torch.multiprocessing.spawn(main, args=(sys.argv[1], sys.argv[2], sys.argv[3]), nprocs=2)
"""


def _run(tmp_path: Path, root: Path, storage: str, port: int) -> list[dict]:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "SOLO_RGBD_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, str(script), str(root), storage, str(tmp_path), str(port)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads((tmp_path / f"{storage}-{r}.json").read_text()) for r in (0, 1)]


def test_two_ranks_decode_once_and_share_the_pages(tmp_path):
    from solo_rgbd.data.synthetic import write_synthetic

    root = write_synthetic(tmp_path / "ds", n=384, seed=1, size=128)
    disk = _run(tmp_path, root, "disk", 29531)
    ram = _run(tmp_path, root, "ram", 29532)
    n, size = 384, disk[0]["bytes"]  # 384 pairs x 128 x 128 x 6 bytes = 37.7 MB
    assert [r["n"] for r in disk] == [n, n] and disk[0]["sum"] == disk[1]["sum"] == ram[0]["sum"]
    assert sum(r["decoded"] for r in disk) == n  # one rank decoded, the other mapped
    assert sorted(r["decoded"] for r in ram) == [n, n]  # the RAM cache: once per rank
    (waiter,) = [r for r in disk if r["decoded"] == 0]  # the rank that mapped the other's work
    # private memory: opening maps the file (no copy); an epoch of gathers keeps a few
    # batches' worth in the allocator (32 x 128 x 128 x 6 = 3.1 MB each), not the dataset
    assert waiter["anon_growth_open"] < 0.05 * size, waiter
    assert waiter["anon_growth"] < 0.5 * size, waiter
    for r in ram:
        assert r["anon_growth"] > 0.9 * size, r  # each rank holds its own copy
    print(json.dumps({"dataset_bytes": size, "disk": disk, "ram": ram}))
