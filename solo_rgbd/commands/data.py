"""``solo-rgbd data {synth,check}``: write the synthetic dataset, check dataset folders."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence


def _data_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="solo-rgbd data", description="Synthesise or check RGB-D datasets."
    )
    sub = parser.add_subparsers(dest="action", required=True)
    synth = sub.add_parser("synth", help="write the synthetic RGB-D saliency dataset")
    synth.add_argument("out", help="output folder (must not exist or be empty)")
    synth.add_argument("--n", type=int, default=512, help="number of pairs (default 512)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--size", type=int, default=128, help="image size in pixels")
    synth.add_argument("--camouflage-ratio", type=float, default=0.25)
    synth.add_argument(
        "--difficulty",
        choices=("standard", "hard"),
        default="standard",
        help="hard: colourful clutter, wider object scales, noisier depth",
    )
    synth.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT")
    synth.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    check = sub.add_parser("check", help="report whether dataset folders are usable")
    check.add_argument("paths", nargs="+", help="dataset roots (folders holding RGB/depth/GT)")
    check.add_argument(
        "--invert-depth",
        action="store_true",
        help="read depth as far = bright (for the polarity hint)",
    )
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def run_data_command(args: Sequence[str]) -> int:
    ns = _data_parser().parse_args(list(args))
    if ns.action == "synth":
        from solo_rgbd.data.synthetic import write_synthetic

        start = time.perf_counter()
        out = write_synthetic(
            ns.out,
            ns.n,
            ns.seed,
            ns.size,
            ns.camouflage_ratio,
            ns.overwrite,
            ns.workers,
            difficulty=ns.difficulty,
        )
        print(f"wrote {ns.n} pairs to {out} in {time.perf_counter() - start:.1f} s")
        return 0
    from solo_rgbd.data.check import check_root, format_report, report_dict

    reports = [check_root(p, ns.invert_depth) for p in ns.paths]
    if ns.json:
        print(json.dumps([report_dict(r) for r in reports], indent=2))
    else:
        print("\n".join(format_report(r) for r in reports))
        total = sum(r.pairs for r in reports)
        print(
            f"total: {total} pairs in {len(reports)} root(s); "
            f"{'all usable' if all(r.usable for r in reports) else 'NOT all usable'}"
        )
    return 0 if all(r.usable for r in reports) else 1
