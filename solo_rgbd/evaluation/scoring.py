"""Scoring saved saliency maps against GT with pysodmetrics, at the GT's resolution.

The field's reading: maxF is the max of the F-measure curve over 256 thresholds
(beta^2 = 0.3), meanF its mean, adpF the F-measure at the adaptive threshold (twice the mean
saliency); likewise for the E-measure; S-measure, weighted F-measure and MAE as defined by
pysodmetrics. Predictions of another size than their GT are resized to the GT (bilinear).

Each image is scored once (its curves and scalars), in parallel processes for large test sets;
a dataset's and each subset's scores are means over their images, exactly what pysodmetrics
computes when it is stepped over the same images.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from solo_rgbd.data.layout import IMAGE_EXTS
from solo_rgbd.data.readers import open_image
from solo_rgbd.errors import DataError

METRICS = ("maxF", "meanF", "adpF", "maxE", "meanE", "adpE", "S", "wF", "MAE")


def _gray(path: Path) -> np.ndarray:
    from solo_rgbd.data.readers import read_mask

    return read_mask(path)


def _score_image(pred_path: Path, gt_path: Path) -> dict[str, np.ndarray]:
    """One image's pysodmetrics values: curves (256 thresholds) and scalars."""
    import py_sod_metrics as M

    gt = _gray(Path(gt_path))
    img = open_image(pred_path, "prediction").convert("L")
    if img.size != (gt.shape[1], gt.shape[0]):
        img = img.resize((gt.shape[1], gt.shape[0]), Image.BILINEAR)
    pred = np.asarray(img)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fm, em, sm, wfm, mae = (
            M.Fmeasure(),
            M.Emeasure(),
            M.Smeasure(),
            M.WeightedFmeasure(),
            M.MAE(),
        )
        for metric in (fm, em, sm, wfm, mae):
            metric.step(pred=pred, gt=gt)
    f, e = fm.get_results(), em.get_results()["em"]
    return {
        "f_curve": f["fm"]["curve"],
        "pr_p": f["pr"]["p"],
        "pr_r": f["pr"]["r"],
        "e_curve": e["curve"],
        "adpF": np.float64(f["fm"]["adp"]),
        "adpE": np.float64(e["adp"]),
        "S": np.float64(sm.get_results()["sm"]),
        "wF": np.float64(wfm.get_results()["wfm"]),
        "MAE": np.float64(mae.get_results()["mae"]),
    }


def _score_chunk(pairs: list[tuple[Path, Path]]) -> list[dict[str, np.ndarray]]:
    return [_score_image(p, g) for p, g in pairs]


#: below this many images scoring stays in-process (a worker's start-up costs about a second)
PARALLEL_MIN_IMAGES = 200


def score_images(
    pred_paths: Sequence[Path], gt_paths: Sequence[Path], workers: int | None = None
) -> list[dict[str, np.ndarray]]:
    """Per-image values of every pair, in order; scored by ``workers`` processes (default:
    every core when there are at least :data:`PARALLEL_MIN_IMAGES` images)."""
    import os

    pairs = list(zip(pred_paths, gt_paths, strict=True))
    if workers is None:  # every core, with at least 50 images each
        workers = (os.cpu_count() or 1) if len(pairs) >= PARALLEL_MIN_IMAGES else 1
        workers = min(workers, len(pairs) // 50 or 1)
    workers = max(1, min(workers, len(pairs)))
    if workers == 1:
        return _score_chunk(pairs)
    import tempfile
    from concurrent.futures import ThreadPoolExecutor

    # worker processes started clean (python -m), whatever the caller's __main__
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(workers) as pool:
        parts = list(
            pool.map(
                lambda k: _run_worker(pairs[k::workers], Path(tmp) / f"{k}.npz"), range(workers)
            )
        )
    out: list[dict[str, np.ndarray]] = [{} for _ in pairs]
    for k, part in enumerate(parts):
        for j, values in enumerate(part):
            out[k + j * workers] = values
    return out


def _run_worker(pairs: list[tuple[Path, Path]], out: Path) -> list[dict[str, np.ndarray]]:
    import json
    import subprocess
    import sys

    job = json.dumps([[str(p), str(g)] for p, g in pairs])
    cmd = [sys.executable, "-m", "solo_rgbd.evaluation.scoring", str(out)]
    proc = subprocess.run(cmd, input=job, capture_output=True, text=True)
    if proc.returncode != 0:
        raise DataError(
            f"a scoring worker failed ({proc.stderr.strip().splitlines()[-1:]}); the maps it "
            f"scored start with '{pairs[0][0]}'."
        )
    with np.load(out) as arrays:
        return [{key: arrays[key][i] for key in arrays.files} for i in range(len(pairs))]


def summarise(per_image: Sequence[dict[str, np.ndarray]]) -> dict:
    """The field's dataset scores from per-image values: every curve and scalar is the mean
    over images (as pysodmetrics computes it), maxF / maxE the max of the mean curve."""

    def mean(key: str) -> np.ndarray:
        return np.mean(np.stack([v[key] for v in per_image]), axis=0)

    f, e = mean("f_curve"), mean("e_curve")
    return {
        "maxF": float(f.max()),
        "meanF": float(f.mean()),
        "adpF": float(mean("adpF")),
        "maxE": float(e.max()),
        "meanE": float(e.mean()),
        "adpE": float(mean("adpE")),
        "S": float(mean("S")),
        "wF": float(mean("wF")),
        "MAE": float(mean("MAE")),
        "n": len(per_image),
        "pr_p": mean("pr_p").tolist(),
        "pr_r": mean("pr_r").tolist(),
        "f_curve": f.tolist(),
    }


def score_pairs(
    pred_paths: Sequence[Path], gt_paths: Sequence[Path], workers: int | None = None
) -> dict:
    """Scores (METRICS) plus curves ('pr_p', 'pr_r', 'f_curve') over matched files."""
    return summarise(score_images(pred_paths, gt_paths, workers))


def match_predictions(pred_dir: Path, gt_paths: dict[str, Path]) -> list[Path]:
    """The prediction file of every GT stem; missing stems are an error naming them."""
    files = sorted(p for p in Path(pred_dir).iterdir() if p.suffix.lower() in IMAGE_EXTS)
    preds = {p.stem: p for p in files}
    counts = Counter(p.stem for p in files)
    twice = sorted(s for s, n in counts.items() if n > 1 and s in gt_paths)
    if twice:
        names = ", ".join(sorted(p.name for p in files if p.stem in twice[:5]))
        raise DataError(
            f"prediction folder '{pred_dir}' has more than one map for {len(twice)} stem(s) "
            f"({names}); which one to score is ambiguous. Keep one file per stem."
        )
    missing = sorted(set(gt_paths) - set(preds))
    if missing:
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise DataError(
            f"prediction folder '{pred_dir}' has no map for {len(missing)} GT stem(s): "
            f"{', '.join(missing[:10])}{more}. Predict every test image (same file stems as "
            "the GT) before scoring."
        )
    return [preds[s] for s in gt_paths]


def score_folder_images(pred_dir: str | Path, gt_paths: dict[str, Path]) -> dict[str, dict]:
    """Every image's values (curves and scalars), by stem, in ``gt_paths``' order."""
    preds = match_predictions(Path(pred_dir), gt_paths)
    return dict(zip(gt_paths, score_images(preds, list(gt_paths.values())), strict=True))


def summarise_subsets(
    per_image: dict[str, dict], subsets: dict[str, list[str]] | None = None
) -> dict:
    """{"all": scores, subset: scores, ...}; each image was scored once."""
    result = {"all": summarise(list(per_image.values()))}
    for name, stems in (subsets or {}).items():
        if stems:
            result[name] = summarise([per_image[s] for s in stems])
    return result


def image_table(per_image: dict[str, dict]) -> list[dict[str, float | str]]:
    """One row of scalars per image (maxF / maxE: the max of the image's own curve)."""
    rows: list[dict[str, float | str]] = []
    for stem, v in per_image.items():
        row: dict[str, float | str] = {"stem": stem}
        row["maxF"] = float(np.max(v["f_curve"]))
        row["maxE"] = float(np.max(v["e_curve"]))
        row.update({k: float(v[k]) for k in ("MAE", "S", "wF", "adpF", "adpE")})
        rows.append(row)
    return rows


def score_folder(
    pred_dir: str | Path, gt_paths: dict[str, Path], subsets: dict[str, list[str]] | None = None
) -> dict:
    """Score ``pred_dir`` against ``gt_paths`` (stem -> GT file), overall and per subset."""
    return summarise_subsets(score_folder_images(pred_dir, gt_paths), subsets)


if __name__ == "__main__":  # a worker of score_images: pairs as JSON on stdin -> OUT.npz
    import json
    import sys

    _values = _score_chunk([(Path(p), Path(g)) for p, g in json.loads(sys.stdin.read())])
    np.savez(sys.argv[1], **{k: np.stack([v[k] for v in _values]) for k in _values[0]})
