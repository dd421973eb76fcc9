"""How representations grow with pretraining: per-modality probe maxF against optimizer steps.

Reads the encoder snapshots a run keeps with ``checkpoint.snapshot_every_n_epochs=N``
(``<run>/snapshots/epochNNN/``; every pretraining cell of ``compare experiment=cpu`` keeps them
every 2 epochs), runs the per-modality linear probe (``solo-rgbd sod probe``'s) on each, and
prints one row per snapshot; step 0 is random init. Writes ``probe_curve.csv`` and
``probe_curve.png`` to ``--out``. Usage::

    python bench/probe_curve.py --out DIR LABEL=RUN_DIR [LABEL=RUN_DIR ...] [-- sod overrides]

The default sod overrides are ``compare experiment=cpu``'s (resnet10t, 48 px, 512 labelled
synthetic pairs, 128 test pairs).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

SOD_CPU = [
    "recipe=quick",
    "backbone=resnet10t",
    "data.synthetic.n=512",
    "data.synthetic.n_test=128",
    "image_size=48",
]


def snapshots(run: Path) -> list[tuple[int, str]]:
    """[(global_step, encoders)] of a run, random init first."""
    points = [(0, "random")]
    for folder in sorted((run / "snapshots").glob("epoch*")):
        manifest = json.loads((folder / "encoders.json").read_text())
        points.append((int(manifest["global_step"]), str(folder)))
    return points


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=100, help="probe training steps")
    parser.add_argument("runs", nargs="+", help="LABEL=RUN_DIR")
    args, extra = parser.parse_known_args()
    from solo_rgbd.commands.sod_eval import sod_probe
    from solo_rgbd.config import compose

    rows = []
    print("| run | step | RGB probe maxF | depth probe maxF |\n| --- | --- | --- | --- |")
    for spec in args.runs:
        label, run = spec.split("=", 1)
        for step, encoders in snapshots(Path(run)):
            cfg = compose("sod", [*SOD_CPU, *extra, f"encoders={encoders}"])
            scores = next(iter(sod_probe(cfg, steps=args.steps).values()))
            row = {"run": label, "step": step, **{m: s["maxF"] for m, s in scores.items()}}
            rows.append(row)
            print(f"| {label} | {step} | {row['rgb']:.3f} | {row['depth']:.3f} |", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "probe_curve.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["run", "step", "rgb", "depth"])
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, args.out / "probe_curve.png")


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), sharex=True)
    for ax, modality in zip(axes, ("rgb", "depth"), strict=True):
        for label in dict.fromkeys(r["run"] for r in rows):
            mine = [r for r in rows if r["run"] == label]
            ax.plot([r["step"] for r in mine], [r[modality] for r in mine], marker="o", label=label)
        ax.set_title(f"{modality} probe")
        ax.set_xlabel("pretraining optimizer steps")
        ax.set_ylabel("maxF")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
