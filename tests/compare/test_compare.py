import json

import pytest

from solo_rgbd.cli import main

TINY = [
    'pretrain=["experiment=quick","backbone=tiny","data.synthetic.n=24","data.synthetic.n_test=8",'
    '"data.synthetic.size=40","data.image_size=40","augmentations.crop_size=32",'
    '"data.batch_size=8","method_kwargs.proj_hidden_dim=32",'
    '"trainer.limit_train_batches=2","log_every_n_steps=1"]',
    'sod=["recipe=quick","backbone=tiny","data.synthetic.n=24","data.synthetic.n_test=8",'
    '"data.synthetic.size=40","image_size=32","batch_size=8","trainer.max_epochs=1",'
    '"decoder_dim=8","qualitative=0"]',
    "budget_epochs=2",
    'method_overrides={mbcf: ["method_kwargs.stage1_epochs=1", "method_kwargs.stage2_epochs=1", '
    '"method_kwargs.one_stage_epochs=2"], alignment: ["method_kwargs.stage1_epochs=1", '
    '"method_kwargs.stage2_epochs=1", "method_kwargs.one_stage_epochs=2"]}',
]


@pytest.mark.slow
def test_quick_grid_writes_every_row_and_reuses_finished_cells(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "experiment=quick", f"out={out}", *TINY]) == 0
    text = capsys.readouterr().out
    # the cells ran with the progress bar on (issue 29), MBCF's stage switch under it
    assert "100%|" in text and "mbcf: stage 2 (IntraCLM + InterCLM) starts" in text
    tables = (out / "tables.md").read_text()
    from solo_rgbd.config import compose

    rows = [r.name for r in compose("compare/quick").rows]
    header = next(line for line in tables.splitlines() if "Barlow Twins" in line)
    for name in ("Random", "MoCo v2 (two-stream)", "SimCLR", "BYOL", "VICReg"):
        assert name in header
    all_rows = json.loads((out / "all_rows.json").read_text())
    assert list(all_rows) == rows  # every row has scores
    for scores in all_rows.values():
        assert {"all", "plain"} <= set(scores["synthetic"])
        assert 0 <= scores["synthetic"]["all"]["maxF"] <= 1
    for name in ("table-1.csv", "table-3.md", "bars_maxF.png", "bars_MAE.png"):
        assert (out / name).is_file(), name
    assert "## Table 3: one-stage vs two-stage" in tables and "[compare] run Random" in text
    # the upper bound: encoders trained with labels, exported, then frozen under a new decoder
    sup = out / "cells" / "supervised" / "seed0" / "supervised" / "encoders"
    assert json.loads((sup / "encoders.json").read_text())["method"] == "supervised"
    assert "## Can this benchmark rank encoders?" in tables and "Supervised - Random" in tables
    _check_grid_report(out, tables, len(rows), tmp_path)
    stamp = (out / "cells" / "random" / "seed0" / "done.json").stat().st_mtime
    assert main(["compare", "experiment=quick", f"out={out}", *TINY]) == 0
    again = capsys.readouterr().out
    assert "[compare] run" not in again and again.count("[compare] reuse") == len(rows)
    assert (out / "cells" / "random" / "seed0" / "done.json").stat().st_mtime == stamp


def _check_grid_report(out, tables, n_rows, tmp_path):
    """The grid's report.html, written when compare finished, in headless Chromium: no console
    message, every plot and image drawn with a size, every table of tables.md with the same
    numbers, a screenshot."""
    from tests.reports.chromium import CHROMIUM, html_tables, markdown_tables, render

    page = out / "report.html"
    assert page.stat().st_size < 5e6
    text = page.read_text()
    for anchor in ("bars", "pretraining", "qualitative", "can-this-benchmark-rank-encoders"):
        assert f'id="{anchor}"' in text, anchor
    assert text.count("<img ") == 3 * 3 + n_rows * 3  # RGB, depth, GT + a row per method
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run does)")
    shown = render(page, tmp_path, height=4000)
    assert shown.console == []
    assert len(shown.plots) >= 3 and all(w > 0 and h > 0 for w, h in shown.plots + shown.svgs)
    assert len(shown.images) == 9 + 3 * n_rows
    assert all(w > 0 and h > 0 and nw > 0 for w, h, nw, _ in shown.images)
    rendered = html_tables(shown.dom)
    expected = markdown_tables(tables)
    assert len(expected) >= 6
    for table in expected:  # the same header, rows and numbers, in the same order
        assert table in rendered, table[0]
    assert shown.screenshot.stat().st_size > 50_000


@pytest.mark.slow
def test_a_failed_cell_is_reported_and_does_not_stop_the_others(tmp_path, capsys):
    out = tmp_path / "cmp"
    rows = (
        "rows=[{name: Random, init: random}, {name: Broken, method: mbcf, "
        'overrides: ["method_kwargs.bogus=1"]}, {name: MBCF, method: mbcf}]'
    )
    seeds = "seeds=[0,1]"
    assert main(["compare", "experiment=quick", f"out={out}", rows, seeds, *TINY]) == 1
    captured = capsys.readouterr()
    assert "Broken (seed 0)" in captured.err and "method_kwargs.bogus" in captured.err
    assert (out / "cells" / "broken" / "seed0" / "failed.json").is_file()
    results = json.loads((out / "all_rows.json").read_text())
    assert set(results) == {"Random", "MBCF"}
    cell = results["MBCF"]["synthetic"]["all"]
    assert cell["seeds"] == 2 and cell["maxF_std"] >= 0
    table = (out / "all_rows.md").read_text()
    assert " ± " in table  # mean ± std over the two seeds
    page = (out / "report.html").read_text()  # the grid still gets its page, naming the failure
    missing = page[page.index('id="missing"') :]
    assert "Broken (seed 0) failed" in missing and "Broken (seed 1) failed" in missing
    assert "method_kwargs.bogus" in missing and 'id="bars"' in page


def test_the_report_says_whether_the_benchmark_separates_representations():
    from solo_rgbd.compare.runner import separation_notes
    from solo_rgbd.tasks.sod.spec import SOD_REPORT

    def row(maxf):
        return {"NJUD": {"all": {"maxF": maxf}}}

    inits = {"Random": "random", "Supervised": "supervised", "MBCF": "pretrain"}
    close = separation_notes({"Random": row(0.80), "Supervised": row(0.83)}, SOD_REPORT, inits)
    assert "cannot separate representations" in close[1] and "+0.030" in close[1]
    apart = separation_notes({"Random": row(0.70), "Supervised": row(0.85)}, SOD_REPORT, inits)
    assert "separates representations" in apart[1] and "cannot" not in apart[1]
    assert separation_notes({"Random": row(0.7)}, SOD_REPORT, inits) == []
    # the bounds are found by their init, not by their display names
    renamed = {"Scratch": "random", "Labels (upper bound)": "supervised"}
    notes = separation_notes(
        {"Scratch": row(0.70), "Labels (upper bound)": row(0.85)}, SOD_REPORT, renamed
    )
    assert "Labels (upper bound) - Scratch = +0.150" in notes[1]
    assert separation_notes({"Random": row(0.7), "Supervised": row(0.9)}, SOD_REPORT, {}) == []


def test_the_report_takes_any_task_metrics_and_headline(tmp_path):
    """A task whose headline is lower-is-better (a segmentation error rate, say) gets its own
    columns, separation sign, probe table and bars: nothing in compare is SOD-shaped."""
    from omegaconf import OmegaConf

    from solo_rgbd.compare.runner import probe_table, separation_notes, write_report
    from solo_rgbd.evaluation.report import Report

    seg = Report(
        metrics=(("mIoU", "mIoU ↑", True), ("err", "pixel error ↓", False)),
        main=("mIoU", "err"),
        headline="err",
        bars=("mIoU",),
    )

    def row(err, miou=0.5):
        return {"SEG": {"all": {"err": err, "err_std": 0.0, "mIoU": miou, "n": 4}}}

    inits = {"Random": "random", "Supervised": "supervised"}
    notes = separation_notes({"Random": row(0.30), "Supervised": row(0.20)}, seg, inits)
    assert "+0.100 err" in notes[1] and "separates representations" in notes[1]
    probes = {"MBCF": {"SEG": {"rgb": {"err": 0.25, "err_std": 0.01}}}}
    assert probe_table(probes, seg).splitlines()[0] == "| Row | Dataset | Encoder | pixel error ↓ |"
    cfg = OmegaConf.create(
        {
            "name": "seg",
            "seeds": [0],
            "budget_epochs": 1,
            "rows": [
                {"name": "Random", "init": "random"},
                {"name": "Supervised", "init": "supervised"},
            ],
            "tables": [
                {"title": "T: errors", "metrics": ["err"], "rows": ["Random", "Supervised"]}
            ],
        }
    )
    results = {"Random": row(0.30, 0.4), "Supervised": row(0.20, 0.6)}
    write_report(cfg, results, tmp_path, probes, seg)
    md = (tmp_path / "tables.md").read_text()
    assert "| SEG | pixel error ↓ | 0.300 | **0.200** |" in md  # lower is best
    assert (tmp_path / "bars_mIoU.png").is_file() and not (tmp_path / "bars_maxF.png").exists()
    assert "mIoU" in (tmp_path / "all_rows.csv").read_text()


def test_cell_diagnostics_are_the_last_epochs_means(tmp_path):
    from solo_rgbd.compare.protocols import cell_diagnostics, diagnostics_section

    logs = tmp_path / "cell" / "pretrain" / "mbcf" / "run" / "logs"
    logs.mkdir(parents=True)
    (logs / "metrics.csv").write_text(
        "epoch,step,grad_norm_rgb_encoder,grad_norm_depth_encoder,loss\n"
        "0,1,9.0,9.0,1\n1,2,2.0,1.0,1\n1,3,4.0,,1\n"
    )
    got = cell_diagnostics(tmp_path / "cell")
    # and the ratio of the two means, RGB over depth
    assert got == {
        "grad_norm_rgb_encoder": 3.0,
        "grad_norm_depth_encoder": 1.0,
        "grad_norm_ratio": 3.0,
    }
    assert cell_diagnostics(tmp_path / "no-pretraining") == {}
    table = diagnostics_section({"MBCF": [got, got], "Random": [{}, {}]})
    assert "| MBCF | 3 ± 0 | 1 ± 0 | 3 ± 0 |" in table and "Random" not in table


@pytest.mark.slow
def test_the_probe_protocol_reports_each_modality_of_each_row(tmp_path, capsys):
    out = tmp_path / "cmp"
    rows = "rows=[{name: Random, init: random}, {name: MBCF, method: mbcf}]"
    args = ["compare", "experiment=quick", f"out={out}", rows, "protocols=[frozen,probe]", *TINY]
    assert main(args) == 0
    tables = (out / "tables.md").read_text()
    assert "## Per-modality linear probes" in tables
    diagnostics = tables.split("## Pretraining diagnostics")[1]
    assert "| MBCF |" in diagnostics and "| Random |" not in diagnostics  # pretrained rows
    probes = json.loads((out / "probes.json").read_text())
    assert set(probes) == {"Random", "MBCF"}
    for row in probes.values():
        assert set(row["synthetic"]) == {"rgb", "depth"}
        assert all(0 <= s["maxF"] <= 1 and 0 <= s["MAE"] <= 1 for s in row["synthetic"].values())
    assert main(["compare", "experiment=quick", "protocols=[finetune]", f"out={out}"]) == 2
    assert "protocols must include frozen" in capsys.readouterr().err
    assert main(["compare", "experiment=quick", "protocols=[frozen,fine]", f"out={out}"]) == 2
    assert "protocols ['fine'] are not available" in capsys.readouterr().err


@pytest.mark.slow
def test_the_finetune_protocol_trains_end_to_end_on_a_share_of_the_labels(tmp_path):
    out = tmp_path / "cmp"
    args = [
        "compare",
        "experiment=quick",
        f"out={out}",
        "rows=[{name: Random, init: random}]",
        "protocols=[frozen,finetune]",
        "finetune_fractions=[0.25,1.0]",
        *TINY,
    ]
    assert main(args) == 0
    finetune = json.loads((out / "finetune.json").read_text())
    assert set(finetune["Random"]) == {"0.25", "1"}
    assert 0 <= finetune["Random"]["0.25"]["synthetic"]["all"]["maxF"] <= 1
    cell = out / "cells" / "random" / "seed0"
    quarter = json.loads((cell / "finetune-0.25" / "train" / "run" / "summary.json").read_text())
    whole = json.loads((cell / "finetune-1" / "train" / "run" / "summary.json").read_text())
    # a quarter of the labelled pairs, cycled to the same number of steps as all of them
    assert quarter["train_pairs"] == whole["train_pairs"] == whole["labelled_pairs"]
    assert quarter["labelled_pairs"] == round(0.25 * whole["labelled_pairs"])
    config = (cell / "finetune-0.25" / "train" / "run" / "config.yaml").read_text()
    assert "freeze: false" in config and "label_fraction: 0.25" in config
    assert "## Fine-tuning with few labels" in (out / "tables.md").read_text()
    assert (out / "finetune_maxF.png").stat().st_size > 1000
