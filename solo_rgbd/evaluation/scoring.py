"""Scoring saved saliency maps against GT with pysodmetrics, at the GT's resolution.

The field's reading: maxF is the max of the F-measure curve over 256 thresholds
(beta^2 = 0.3), meanF its mean, adpF the F-measure at the adaptive threshold (twice the mean
saliency); likewise for the E-measure; S-measure, weighted F-measure and MAE as defined by
pysodmetrics. Predictions of another size than their GT are resized to the GT (bilinear).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from solo_rgbd.data.layout import IMAGE_EXTS
from solo_rgbd.errors import DataError

METRICS = ("maxF", "meanF", "adpF", "maxE", "meanE", "adpE", "S", "wF", "MAE")


def _gray(path: Path) -> np.ndarray:
    from solo_rgbd.data.readers import read_mask

    return read_mask(path)


def score_pairs(pred_paths: Sequence[Path], gt_paths: Sequence[Path]) -> dict:
    """Scores (METRICS) plus curves ('pr_p', 'pr_r', 'f_curve') over matched files."""
    import py_sod_metrics as M

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fm, em, sm, wfm, mae = (
            M.Fmeasure(),
            M.Emeasure(),
            M.Smeasure(),
            M.WeightedFmeasure(),
            M.MAE(),
        )
    for pred_path, gt_path in zip(pred_paths, gt_paths, strict=True):
        gt = _gray(Path(gt_path))
        img = Image.open(pred_path).convert("L")
        if img.size != (gt.shape[1], gt.shape[0]):
            img = img.resize((gt.shape[1], gt.shape[0]), Image.BILINEAR)
        pred = np.asarray(img)
        for metric in (fm, em, sm, wfm, mae):
            metric.step(pred=pred, gt=gt)
    f, e = fm.get_results(), em.get_results()["em"]
    return {
        "maxF": float(f["fm"]["curve"].max()),
        "meanF": float(f["fm"]["curve"].mean()),
        "adpF": float(f["fm"]["adp"]),
        "maxE": float(e["curve"].max()),
        "meanE": float(e["curve"].mean()),
        "adpE": float(e["adp"]),
        "S": float(sm.get_results()["sm"]),
        "wF": float(wfm.get_results()["wfm"]),
        "MAE": float(mae.get_results()["mae"]),
        "n": len(pred_paths),
        "pr_p": f["pr"]["p"].tolist(),
        "pr_r": f["pr"]["r"].tolist(),
        "f_curve": f["fm"]["curve"].tolist(),
    }


def match_predictions(pred_dir: Path, gt_paths: dict[str, Path]) -> list[Path]:
    """The prediction file of every GT stem; missing stems are an error naming them."""
    preds = {p.stem: p for p in Path(pred_dir).iterdir() if p.suffix.lower() in IMAGE_EXTS}
    missing = sorted(set(gt_paths) - set(preds))
    if missing:
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise DataError(
            f"prediction folder '{pred_dir}' has no map for {len(missing)} GT stem(s): "
            f"{', '.join(missing[:10])}{more}. Predict every test image (same file stems as "
            "the GT) before scoring."
        )
    return [preds[s] for s in gt_paths]


def score_folder(
    pred_dir: str | Path, gt_paths: dict[str, Path], subsets: dict[str, list[str]] | None = None
) -> dict:
    """Score ``pred_dir`` against ``gt_paths`` (stem -> GT file), overall and per subset."""
    preds = match_predictions(Path(pred_dir), gt_paths)
    by_stem = dict(zip(gt_paths, preds, strict=True))
    result = {"all": score_pairs(preds, list(gt_paths.values()))}
    for name, stems in (subsets or {}).items():
        if stems:
            result[name] = score_pairs([by_stem[s] for s in stems], [gt_paths[s] for s in stems])
    return result
