"""``solo-rgbd data {synth,check,pack}``: write the synthetic dataset, check dataset folders,
pack a dataset into LitData chunks."""

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
    pack = sub.add_parser(
        "pack", help="decode a dataset once into LitData chunks (data.format=litdata)"
    )
    pack.add_argument("src", nargs="+", help="dataset root(s), any supported layout")
    pack.add_argument("out", help="the packed folder (new; OUT.partial while it is written)")
    pack.add_argument("--size", type=int, default=256, help="image size (data.image_size)")
    pack.add_argument("--invert-depth", action="store_true", help="far = bright in SRC")
    pack.add_argument("--workers", type=int, default=1, help="packing processes (default 1)")
    pack.add_argument("--chunk-bytes", default="64MB", help="LitData chunk size (default 64MB)")
    pack.add_argument(
        "--split", default="train", choices=("train", "test"), help="which split SRC is"
    )
    pack.add_argument(
        "--labels",
        default="saliency",
        choices=("saliency", "classes"),
        help="GT as saliency maps (bilinear) or class ids (nearest)",
    )
    pack.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _pack(ns: argparse.Namespace) -> int:
    from solo_rgbd.data.decode import RootSpec
    from solo_rgbd.data.shards import pack

    start = time.perf_counter()
    roots = [RootSpec(p, ns.invert_depth) for p in ns.src]
    out = pack(
        roots,
        ns.out,
        ns.size,
        ns.workers,
        ns.chunk_bytes,
        progress=not ns.quiet,
        split=ns.split,
        labels=ns.labels,
    )
    print(f"packed {', '.join(ns.src)} into {out} in {time.perf_counter() - start:.1f} s")
    print(f"train from it with: data.format=litdata data.path={out} data.image_size={ns.size}")
    return 0


def run_data_command(args: Sequence[str]) -> int:
    ns = _data_parser().parse_args(list(args))
    if ns.action == "pack":
        return _pack(ns)
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
