"""What an evaluation leaves beside its tables, for people and for reports.

- ``per_image_<set>.csv``: one row of scalars per test image (stem, maxF, maxE, MAE, S, wF, ...);
- ``curves.json``: ``{set: {subset: {"pr_p", "pr_r", "f_curve"}}}``, the mean curves over 256
  thresholds (pysodmetrics' order: threshold 255 down to 0);
- ``qualitative/<set>/``: RGB, depth, GT and prediction of a few images as PNG at the
  network's resolution, with ``index.json``: ``fixed`` (the first images of the set, the same
  for every model: a grid compares rows on them) and ``ranked`` (best, median, worst by
  :data:`RANK_BY`).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from solo_rgbd.utils.atomic import atomic_path, atomic_write_text

CURVES = "curves.json"
QUALITATIVE = "qualitative"
KINDS = ("rgb", "depth", "gt", "pred")
#: the per-image score that orders images for the best / median / worst examples
RANK_BY = "MAE"


def per_image_csv(name: str) -> str:
    return f"per_image_{name}.csv"


def write_per_image(rows: Sequence[dict], out: Path, name: str) -> Path:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(
        {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows
    )
    path = out / per_image_csv(name)
    atomic_write_text(buf.getvalue(), path)
    return path


def write_curves(results: dict[str, dict[str, dict]], out: Path) -> Path:
    """The PR and F curves of every test set and subset, rounded to 5 digits."""
    keys = ("pr_p", "pr_r", "f_curve")
    curves = {
        name: {
            sub: {k: [float(f"{v:.5g}") for v in scores[k]] for k in keys}
            for sub, scores in subsets.items()
        }
        for name, subsets in results.items()
    }
    atomic_write_text(json.dumps(curves), out / CURVES)
    return out / CURVES


def ranked(rows: Sequence[dict], key: str = RANK_BY, lower_is_better: bool = True) -> dict:
    """{"best", "median", "worst"}: stems of the images at both ends and the middle of ``key``."""
    order = sorted(rows, key=lambda r: (float(r[key]), str(r["stem"])))
    if not lower_is_better:
        order = order[::-1]
    pick = {"best": order[0], "median": order[len(order) // 2], "worst": order[-1]}
    return {k: str(r["stem"]) for k, r in pick.items()}


def write_qualitative(
    folder: Path,
    fixed: Sequence[str],
    ranks: dict[str, str],
    pictures: Callable[[str], dict[str, np.ndarray]],
) -> Path:
    """``folder``: KINDS PNGs of every stem in ``fixed`` and ``ranks``, ``pictures(stem)``
    giving them as uint8 arrays, and ``index.json`` (last)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for stem in dict.fromkeys([*fixed, *ranks.values()]):
        for kind, array in pictures(stem).items():
            with atomic_path(folder / f"{stem}.{kind}.png") as tmp:
                Image.fromarray(np.ascontiguousarray(array)).save(tmp, format="PNG")
    index = {"fixed": list(fixed), "ranked": ranks, "rank_by": RANK_BY}
    atomic_write_text(json.dumps(index, indent=1), folder / "index.json")
    return folder
