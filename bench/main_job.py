"""The README's main job, timed as a user runs it (issue 29).

    python bench/main_job.py                 # 3 runs, each in an empty folder, fresh cache
    python bench/main_job.py --runs 5 --json out.json
    python bench/main_job.py --warm          # the dataset already cached (a second run)

Runs ``solo-rgbd pretrain method=mbcf`` exactly as the README shows it: no override, the
progress bar on, output to a pipe, from an empty folder with ``SOLO_RGBD_CACHE`` pointing at an
empty folder (so the synthetic dataset is generated and decoded, as on a fresh machine). Prints
each run's wall time, the median and spread, the final in-batch top-1 per modality from
``logs/metrics.csv``, the CPU model (as ``run.json`` records it) and the date. Time it on a
quiet machine: a second heavy job on 2 cores slows both many times over.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMAND = ["solo-rgbd", "pretrain", "method=mbcf"]  # the README's first command, as written
TOP1 = ("acc_batch_rgb", "acc_batch_depth", "acc_batch_inter")  # inter: the fused term


def _exe() -> list[str]:
    script = Path(sys.executable).with_name(COMMAND[0])
    return [str(script) if script.exists() else COMMAND[0], *COMMAND[1:]]


def _last_top1(run: Path) -> dict[str, float]:
    with open(run / "logs" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get(TOP1[0])]
    return {k: round(float(rows[-1][k]), 3) for k in TOP1 if rows and rows[-1].get(k)}


def one_run(warm_cache: str | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cwd, cache = Path(tmp) / "user", warm_cache or str(Path(tmp) / "cache")
        cwd.mkdir()
        env = {**os.environ, "SOLO_RGBD_CACHE": cache}
        start = time.perf_counter()
        proc = subprocess.run(_exe(), cwd=cwd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"the main job exited {proc.returncode}:\n{proc.stdout[-2000:]}{proc.stderr}")
        run = next((cwd / "outputs" / "mbcf").iterdir())
        info = json.loads((run / "run.json").read_text())["sessions"][0]
        return {"wall_s": round(wall, 1), "top1": _last_top1(run), "cpu": info["device"]["name"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--warm", action="store_true", help="reuse one cache (generated first)")
    p.add_argument("--json", default=None, help="also write the result here")
    args = p.parse_args()
    warm = tempfile.mkdtemp() if args.warm else None
    try:
        if warm:
            one_run(warm)  # fills the cache; not timed
        runs = []
        for i in range(args.runs):
            runs.append(one_run(warm))
            print(f"run {i}: {runs[-1]['wall_s']} s, top-1 {runs[-1]['top1']}", file=sys.stderr)
    finally:
        if warm:
            shutil.rmtree(warm, ignore_errors=True)
    walls = [r["wall_s"] for r in runs]
    result = {
        "command": " ".join(COMMAND),
        "cache": "warm" if warm else "fresh",
        "date": datetime.date.today().isoformat(),
        "cpu": runs[0]["cpu"],
        "cores": os.cpu_count(),
        "wall_s": walls,
        "median_s": statistics.median(walls),
        "spread_s": [min(walls), max(walls)],
        "top1_last_logged": runs[-1]["top1"],
    }
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
