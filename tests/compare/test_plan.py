from solo_rgbd.cli import main
from solo_rgbd.compare.plan import plan_rows
from solo_rgbd.config import compose


def _paper_cells():
    cfg = compose("compare/paper", ["data_base=/datasets"])
    return cfg, {c["row"]: c for c in plan_rows(cfg, compose("sod", list(cfg.sod)))}


def test_paper_plan_keeps_each_rows_own_budget():
    cfg, cells = _paper_cells()
    assert cfg.budget_epochs == 300  # and yet:
    for name in (
        "One-stage no mask",
        "One-stage 25% mask",
        "One-stage 50% mask",
        "Alignment (one-stage)",
    ):
        assert (cells[name]["epochs"], cells[name]["lr"]) == ("150", "0.07"), name
    for name in (
        "Two-stage no mask",
        "Two-stage 25% mask",
        "MBCF (two-stage 50% mask)",
        "Alignment (two-stage)",
    ):
        assert (cells[name]["epochs"], cells[name]["lr"]) == ("200 + 100", "0.03 / 0.05"), name
    assert cells["Intra-modal"]["schedule"] == "intra_only"
    assert (cells["Intra-modal"]["epochs"], cells["Intra-modal"]["lr"]) == (
        "150 (intra only)",
        "0.07",
    )
    masks = [
        cells[f"{s}-stage {m}"]["mask"] for s in ("One", "Two") for m in ("no mask", "25% mask")
    ]
    assert (
        masks == ["0", "0.25", "0", "0.25"] and cells["MBCF (two-stage 50% mask)"]["mask"] == "0.5"
    )
    for cell in cells.values():
        if cell["method"] in ("mbcf", "alignment"):
            assert cell["momentum"] == "0.999 constant" and cell["shuffle-BN"] == "on (2 groups)"
            assert cell["batch"] == "64"
            assert cell["augmentation"].startswith("crop 224 scale [0.2, 1], flip 0.5, gray 0.2")
            assert "jitter 0, blur 0" in cell["augmentation"]


def test_paper_tables_pair_rows_as_the_paper_does():
    cfg, cells = _paper_cells()
    tables = {t.title.split(":")[0]: list(t.rows) for t in cfg.tables}
    assert tables["Table 2"] == ["Intra-modal", "One-stage no mask"]
    assert tables["Table 4"] == [
        "Alignment (one-stage)",
        "One-stage 50% mask",
        "Alignment (two-stage)",
        "MBCF (two-stage 50% mask)",
    ]
    tests = cells["Random"]["test sets"]
    for name in ("NJUD", "NLPR", "DUT", "STERE", "SIP"):
        assert name in tests
    assert "COME-E (optional, absent: skipped)" in tests and "COME-H (optional" in tests
    sod = compose("sod", list(cfg.sod))
    come = [t for t in sod.test_sets if t.name.startswith("COME")]
    assert [t.path for t in come] == ["/datasets/COME15K/COME-E", "/datasets/COME15K/COME-H"]


def test_plan_from_the_cli_runs_nothing(tmp_path, capsys):
    assert main(["compare", "experiment=paper", "--plan", f"out={tmp_path / 'cmp'}"]) == 0
    out = capsys.readouterr().out
    assert "11 cells (nothing was run)" in out and "| MBCF (two-stage 50% mask) | 0 | mbcf |" in out
    assert not (tmp_path / "cmp").exists()
    assert main(["compare", "experiment=paper"]) == 2  # data_base is required to run
    assert "data_base" in capsys.readouterr().err


def test_the_balance_plan_names_each_rows_draw_and_balancing():
    cfg = compose("compare/balance", [])
    cells = {c["row"]: c for c in plan_rows(cfg, compose("sod", list(cfg.sod)))}
    assert cells["Random 50% shared"]["mask"] == "0.5 random"
    assert cells["Random 50% independent"]["mask"] == "0.5 random (independent)"
    assert cells["OGM-GE no mask"]["mask"] == "0; balance ogm"
    assert cells["OGM-GE + MBCF mask"]["mask"] == "0.5; balance ogm"
    assert cells["Modality dropout"]["mask"] == "0; balance modality_dropout"
    assert len(cells) == 7 and list(cfg.seeds) == [0, 1, 2]
