"""One compare cell's time outside training (issue 11: <= 15 s), printed as JSON.

Runs ``solo-rgbd compare`` for one row and one seed twice in the same process (the second time
the decoded caches are warm, as for every cell after the first) and splits each cell's wall
time into the time spent inside ``Trainer.fit`` (training, validation included) and the rest:
start-up, config composition, cache build, checkpoint loading, prediction, scoring, tables and
plots. Usage::

    python bench/cell_overhead.py [--row random|mbcf] [key=value ...]   # compare overrides
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import lightning.pytorch as pl


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--row", default="random", choices=("random", "mbcf"))
    args, overrides = parser.parse_known_args()
    from solo_rgbd.cli import main as cli

    fit_seconds: list[float] = []
    original = pl.Trainer.fit

    def timed_fit(self, *a, **k):
        start = time.perf_counter()
        try:
            return original(self, *a, **k)
        finally:
            fit_seconds.append(time.perf_counter() - start)

    pl.Trainer.fit = timed_fit
    row = (
        "rows=[{name: Random, init: random}]"
        if args.row == "random"
        else "rows=[{name: MBCF, method: mbcf}]"
    )
    cells = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(2):
            fit_seconds.clear()
            start = time.perf_counter()
            rc = cli(
                [
                    "compare",
                    "experiment=quick",
                    f"out={Path(tmp) / str(k)}",
                    row,
                    "tables=[]",
                    *overrides,
                ]
            )
            total = time.perf_counter() - start
            if rc != 0:
                sys.exit(rc)
            fit = sum(fit_seconds)
            cells.append(
                {
                    "cell": "first" if k == 0 else "warm (caches reused)",
                    "total_s": round(total, 2),
                    "inside_fit_s": round(fit, 2),
                    "outside_fit_s": round(total - fit, 2),
                    "fits": len(fit_seconds),
                }
            )
    print(json.dumps({"row": args.row, "overrides": overrides, "cells": cells}, indent=2))


if __name__ == "__main__":
    main()
