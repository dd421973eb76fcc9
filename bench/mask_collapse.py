"""The random-mask control, step by step at the switch to stage 2 (issue 45).

    python bench/mask_collapse.py                       # shared and independent draws, seed 0
    python bench/mask_collapse.py --draws shared --stage1 10 --stage2 2 --seed 1 -- EXTRA=...

Pretrains MBCF at ``experiment=cpu`` with ``ablation=two_stage_random50`` (a fresh random half
of the RGB channels masked), ``stage1_epochs`` then ``stage2_epochs``, every step logged, and
prints for each draw the stage-2 steps: ``loss_inter`` (chance: ln(queue + 1)),
``acc_batch_inter`` (chance: 1 / batch), the fused queries' norm and their mean cosine (1.0:
every query points the same way, a collapse). Prints JSON at the end.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import tempfile

from solo_rgbd.commands.pretrain import run_pretrain
from solo_rgbd.config import compose

COLUMNS = ("loss_inter", "acc_batch_inter", "fused_norm", "fused_query_cosine")


def run(draw: str, stage1: int, stage2: int, seed: int, extra: list[str]) -> list[dict]:
    with tempfile.TemporaryDirectory() as out:
        over = [
            "method=mbcf", "experiment=cpu", "ablation=two_stage_random50",
            f"method_kwargs.fusion.random_draw={draw}", f"method_kwargs.stage1_epochs={stage1}",
            f"method_kwargs.stage2_epochs={stage2}", "log_every_n_steps=1", f"seed={seed}",
            "trainer.enable_progress_bar=false", "report=false", f"output_dir={out}",
            "run_name=r", *extra,
        ]  # fmt: skip
        run_dir = run_pretrain(compose("pretrain", over))
        with open(run_dir / "logs" / "metrics.csv", newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("loss_inter")]
    return [{k: float(r[k]) for k in ("step", *COLUMNS) if r.get(k)} for r in rows]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--draws", nargs="+", default=["shared", "independent"])
    p.add_argument("--stage1", type=int, default=10)
    p.add_argument("--stage2", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("extra", nargs="*", help="more pretrain overrides")
    args = p.parse_args()
    result = {}
    for draw in args.draws:
        rows = run(draw, args.stage1, args.stage2, args.seed, args.extra)
        result[draw] = rows
        print(f"--- random_draw={draw} (chance loss {math.log(1025):.2f})")
        for r in rows:
            print(
                "  " + "  ".join(f"{k} {r.get(k, float('nan')):8.3f}" for k in ("step", *COLUMNS))
            )
    print(json.dumps({d: rows[-1] for d, rows in result.items()}, indent=1))


if __name__ == "__main__":
    main()
