"""The grid's page from the files compare leaves, without running a grid: tables.md's tables
with the best value in bold, the verdict set apart, bars and label-efficiency curves with the
std over seeds as error bars, and failed or unfinished cells named."""

import json
import re

from solo_rgbd.reports.build import write_report
from tests.reports.chromium import html_tables, markdown_tables

TABLES = """# compare experiment=t

seeds: [0, 1]; pretraining budget: 2 epochs per row; cells: mean ± std over seeds.

## Can this benchmark rank encoders?

- synthetic: Supervised - Random = +0.173 maxF: the benchmark separates representations.

## Table 1: initialisation (maxF, MAE)

| Dataset | Metrics | Random | MBCF |
| --- | --- | --- | --- |
| synthetic | maxF ↑ | 0.500 ± 0.010 | **0.600 ± 0.020** |
|  | MAE ↓ | 0.300 ± 0.010 | **0.200 ± 0.030** |
"""


def _scores(maxf: float, std: float) -> dict:
    return {"all": {"maxF": maxf, "maxF_std": std, "MAE": 0.2, "MAE_std": 0.01, "n": 8}}


def _grid(tmp_path):
    out = tmp_path / "cmp"
    out.mkdir()
    (out / "tables.md").write_text(TABLES)
    rows = [
        {
            "name": n,
            "init": "pretrain",
            "seeds": [0, 1],
            "cells": {str(s): f"cells/{n}/seed{s}" for s in (0, 1)},
        }
        for n in ("Random", "MBCF")
    ]
    grid = {"name": "t", "seeds": [0, 1], "headline": "maxF", "bars": ["maxF", "MAE"]}
    (out / "grid.json").write_text(json.dumps({**grid, "rows": rows}))
    results = {
        "Random": {"synthetic": _scores(0.5, 0.01)},
        "MBCF": {"synthetic": _scores(0.6, 0.02)},
    }
    (out / "all_rows.json").write_text(json.dumps(results))
    finetune = {
        row: {f: {"synthetic": _scores(v + float(f) / 10, 0.05)} for f in ("0.1", "1")}
        for row, v in (("Random", 0.5), ("MBCF", 0.6))
    }
    (out / "finetune.json").write_text(json.dumps(finetune))
    for name in ("Random", "MBCF"):
        (out / "cells" / name / "seed0").mkdir(parents=True)
        (out / "cells" / name / "seed0" / "done.json").write_text("{}")
    (out / "cells" / "MBCF" / "seed1").mkdir()
    (out / "cells" / "MBCF" / "seed1" / "failed.json").write_text(json.dumps({"error": "boom"}))
    (out / "cells" / "Random" / "seed1").mkdir()  # never finished
    return out


def test_a_grid_page_shows_its_tables_charts_and_failed_cells(tmp_path):
    out = _grid(tmp_path)
    page = write_report(out).read_text()
    assert html_tables(page)[:1] == markdown_tables(TABLES)  # the same cells, bold removed
    assert "<b>0.600 ± 0.020</b>" in page  # the best value stays marked
    assert re.search(r'<div class="note"><ul><li>synthetic: Supervised - Random', page)
    figures = json.loads(re.search(r'id="figures">(.*?)</script>', page, re.S)[1])["figures"]
    assert len(figures) == 3  # bars of maxF and MAE, the label-efficiency curves
    bars = figures[0]["data"][0]
    assert bars["x"] == ["Random", "MBCF"] and bars["y"] == [0.5, 0.6]
    assert bars["error_y"]["array"] == [0.01, 0.02]  # the std over seeds
    curves = figures[2]
    assert [t["name"] for t in curves["data"]] == ["Random", "MBCF"]
    assert curves["data"][1]["x"] == [0.1, 1.0] and curves["layout"]["xaxis"]["type"] == "log"
    missing = page[page.index('id="missing"') :]
    assert "MBCF (seed 1) failed: boom" in missing
    assert "Random (seed 1): not run yet" in missing


def test_a_grid_without_its_manifest_still_shows_the_tables(tmp_path):
    out = _grid(tmp_path)
    (out / "grid.json").unlink()
    page = write_report(out).read_text()
    assert "grid.json: missing" in page and "Table 1: initialisation" in page
