import warnings

import numpy as np
import py_sod_metrics as M
import pytest
import torch
from PIL import Image

from solo_rgbd.errors import DataError
from solo_rgbd.evaluation.fast import FastSODScores
from solo_rgbd.evaluation.report import paper_table
from solo_rgbd.evaluation.scoring import score_folder
from solo_rgbd.tasks.sod.spec import SOD_REPORT


def _write_set(tmp_path, n=6, shape=(30, 44), perfect=False, seed=0):
    rng = np.random.default_rng(seed)
    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    gts, preds = {}, {}
    for i in range(n):
        gt = np.zeros(shape, np.uint8)
        y, x = rng.integers(2, 12, size=2)
        gt[y : y + 12, x : x + 20] = 255
        pred = (
            gt.copy()
            if perfect
            else np.clip(gt * 0.6 + rng.random(shape) * 110, 0, 255).astype(np.uint8)
        )
        Image.fromarray(gt).save(tmp_path / "gt" / f"{i:03d}.png")
        Image.fromarray(pred).save(tmp_path / "pred" / f"{i:03d}.png")
        gts[f"{i:03d}"] = tmp_path / "gt" / f"{i:03d}.png"
        preds[f"{i:03d}"] = pred
    return gts, preds


def test_scores_equal_pysodmetrics_on_the_same_pngs(tmp_path):
    gts, _ = _write_set(tmp_path)
    ours = score_folder(tmp_path / "pred", gts)["all"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fm, em, sm, wfm, mae = (
            M.Fmeasure(),
            M.Emeasure(),
            M.Smeasure(),
            M.WeightedFmeasure(),
            M.MAE(),
        )
    for stem, gt_path in gts.items():
        gt = np.asarray(Image.open(gt_path))
        pred = np.asarray(Image.open(tmp_path / "pred" / f"{stem}.png"))
        for m in (fm, em, sm, wfm, mae):
            m.step(pred=pred, gt=gt)
    f, e = fm.get_results()["fm"], em.get_results()["em"]
    expected = {
        "maxF": f["curve"].max(),
        "meanF": f["curve"].mean(),
        "adpF": f["adp"],
        "maxE": e["curve"].max(),
        "meanE": e["curve"].mean(),
        "adpE": e["adp"],
        "S": sm.get_results()["sm"],
        "wF": wfm.get_results()["wfm"],
        "MAE": mae.get_results()["mae"],
    }
    for key, value in expected.items():
        assert ours[key] == pytest.approx(float(value), abs=1e-6), key


def test_parallel_workers_and_subsets_give_the_same_scores_as_one_pass(tmp_path):
    """Each image is scored once; two worker processes or one, and a subset's scores equal
    scoring that subset alone."""
    from solo_rgbd.evaluation.scoring import score_images, score_pairs

    gts, _ = _write_set(tmp_path, n=12)
    preds = [tmp_path / "pred" / f"{s}.png" for s in gts]
    one = score_images(preds, list(gts.values()), workers=1)
    two = score_images(preds, list(gts.values()), workers=2)
    for a, b in zip(one, two, strict=True):
        assert set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)
    odd = [s for i, s in enumerate(gts) if i % 2]
    result = score_folder(tmp_path / "pred", gts, {"odd": odd})
    alone = score_pairs([tmp_path / "pred" / f"{s}.png" for s in odd], [gts[s] for s in odd])
    for key in ("maxF", "maxE", "S", "wF", "MAE", "adpF"):
        assert result["odd"][key] == pytest.approx(alone[key], abs=1e-12), key
    assert result["odd"]["n"] == 6 and result["all"]["n"] == 12


def test_a_perfect_prediction_scores_perfectly(tmp_path):
    gts, _ = _write_set(tmp_path, perfect=True)
    s = score_folder(tmp_path / "pred", gts)["all"]
    assert s["maxF"] == pytest.approx(1.0, abs=1e-6) and s["MAE"] == 0.0
    assert s["S"] == pytest.approx(1.0, abs=1e-6)
    n = 30 * 44  # E-measure can exceed 1 by N / (N - 1)
    assert 1.0 - 1e-6 <= s["maxE"] <= n / (n - 1) + 1e-6


def test_predictions_of_another_size_are_resized_to_the_gt(tmp_path):
    gts, _ = _write_set(tmp_path, perfect=True)
    for path in (tmp_path / "pred").iterdir():
        Image.open(path).resize((88, 60), Image.NEAREST).save(path)
    s = score_folder(tmp_path / "pred", gts)["all"]
    assert s["maxF"] > 0.95 and s["MAE"] < 0.02


def test_missing_predictions_are_named(tmp_path):
    gts, _ = _write_set(tmp_path)
    (tmp_path / "pred" / "002.png").unlink()
    (tmp_path / "pred" / "004.png").unlink()
    with pytest.raises(DataError, match="no map for 2 GT stem.*002, 004"):
        score_folder(tmp_path / "pred", gts)


def test_fast_scores_match_pysodmetrics():
    rng = np.random.default_rng(3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fm, mae = M.Fmeasure(), M.MAE()
    fast = FastSODScores()
    for _ in range(4):
        gt = (rng.random((20, 24)) > 0.7).astype(np.uint8) * 255
        pred = (np.clip(gt / 255 * 0.4 + rng.random((20, 24)) * 0.7, 0, 1) * 255).astype(np.uint8)
        fm.step(pred=pred, gt=gt)
        mae.step(pred=pred, gt=gt)
        fast.update(
            torch.from_numpy(pred / 255.0)[None, None], torch.from_numpy(gt / 255.0)[None, None]
        )
    got = fast.compute()
    assert got["maxF"] == pytest.approx(fm.get_results()["fm"]["curve"].max(), abs=1e-5)
    assert got["MAE"] == pytest.approx(mae.get_results()["mae"], abs=1e-5)


def test_table_is_laid_out_like_the_papers_table_1():
    scores = {"maxF": 0.9, "maxE": 0.95, "MAE": 0.04, "S": 0.9, "wF": 0.8, "n": 3}
    table = paper_table(
        {
            "Random": {"NJUD": {"all": scores}},
            "Self-supervised": {"NJUD": {"all": {**scores, "maxF": 0.91}}},
        },
        report=SOD_REPORT,
    )
    lines = table.splitlines()
    assert lines[0] == "| Dataset | Metrics | Random | Self-supervised |"
    assert lines[2].startswith("| NJUD | maxF ↑ | 0.900 | **0.910** |")
    assert lines[3].startswith("|  | E^max ↑ |") and lines[4].startswith("|  | MAE ↓ |")


def test_fast_scores_reduce_across_ranks_like_one_process():
    """What DDP's sync does (sum the states of every rank) gives the whole set's scores."""
    torch.manual_seed(0)
    pred, gt = torch.rand(6, 1, 16, 16), (torch.rand(6, 1, 16, 16) > 0.6).float()
    whole, rank0, rank1 = FastSODScores(), FastSODScores(), FastSODScores()
    whole.update(pred, gt)
    rank0.update(pred[:2], gt[:2])  # uneven shares, as the last batch often is
    rank1.update(pred[2:], gt[2:])
    rank0.merge_state(rank1)
    assert rank0.compute() == pytest.approx(whole.compute(), abs=1e-9)
