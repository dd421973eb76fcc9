"""Issue 44: a researcher's own RGB-D data, from folder to compared results, without a silent
wrong score: depth polarity checked wherever depth is read with GT, the data named after its
folder, compare on a folder and from a grid file, help for every subcommand, resume that says
where it resumed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from solo_rgbd.cli import main
from solo_rgbd.config import compose
from solo_rgbd.errors import ConfigError, DataError
from tests.conftest import SHORT_MBCF, tiny_overrides


def _inverted(src: Path, dst: Path) -> Path:
    """A copy of a dataset whose depth maps are stored far = bright (255 - d)."""
    shutil.copytree(src, dst)
    for f in (dst / "depth").iterdir():
        img = Image.open(f)
        Image.eval(img, lambda v: 255 - v).save(f)
    return dst


# ----- 1. polarity is checked wherever depth is read with GT -----------------------------------
def test_pretraining_on_inverted_depth_stops_with_a_paragraph_naming_the_set(synth_root, tmp_path):
    far = _inverted(synth_root, tmp_path / "far_bright")
    over = tiny_overrides(tmp_path, **{"data.path": str(far)})
    assert main(["pretrain", *over]) == 2
    assert not (tmp_path / "outputs").exists()  # nothing written
    with pytest.raises(DataError, match="data 'far_bright' looks inverted with invert_depth=false"):
        from solo_rgbd.data.sources import build_from_config

        build_from_config(compose("pretrain", over).data)
    fixed = tiny_overrides(tmp_path, **{"data.path": str(far), "data.invert_depth": "true"})
    build_from_config(compose("pretrain", fixed).data)  # set right: no error
    unusual = [*over, "data.check_polarity=false"]
    build_from_config(compose("pretrain", unusual).data)  # the override for a real exception


def test_an_inverted_test_set_is_never_scored_silently(synth_root, tmp_path, capsys):
    from solo_rgbd.data.decode import RootSpec
    from solo_rgbd.tasks.sod.predict import test_cache

    far = _inverted(synth_root, tmp_path / "far_bright")
    cfg = compose("sod", [f"data.path={synth_root}"])
    with pytest.raises(DataError, match="test set 'far' looks inverted"):
        test_cache(cfg, RootSpec(str(far), False, "far"), 32)
    assert len(test_cache(cfg, RootSpec(str(far), True, "far"), 32)) == 32


def test_an_unclear_polarity_is_one_warning_and_a_set_without_gt_one_note(capsys):
    from solo_rgbd.data.check import check_polarity
    from solo_rgbd.data.decode import encode_depth
    from solo_rgbd.data.pairstore import ArrayStore, PairMeta

    n, size = 10, 16
    gt = torch.zeros(n, 1, size, size, dtype=torch.uint8)
    gt[:, :, 4:12, 4:12] = 255
    depth = torch.full((n, 1, size, size), 0.3)
    depth[:5, :, 4:12, 4:12] = 0.8  # half the objects near, half far: unclear
    depth[5:, :, 4:12, 4:12] = 0.1
    meta = PairMeta([str(i) for i in range(n)], ["s"] * n, [(size, size)] * n)
    rgb = torch.zeros(n, 3, size, size, dtype=torch.uint8)
    store = ArrayStore(rgb, encode_depth(depth), gt, meta)
    check_polarity(store, "set A", False)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "polarity of set A" in err and "unclear" in err
    no_gt = ArrayStore(rgb, encode_depth(depth), None, meta)
    check_polarity(no_gt, "set B", False)
    check_polarity(no_gt, "set B", False)
    assert capsys.readouterr().err.count("set B has no GT") == 1  # once per set


# ----- 2. your own folder is a first-class path -------------------------------------------------
def test_your_own_folder_is_named_after_itself_and_a_big_shrink_is_said(synth_root, tmp_path):
    mine = tmp_path / "MyRGBD"
    shutil.copytree(synth_root, mine)
    cfg = compose("pretrain", [f"data.path={mine}"])
    assert cfg.data.name == "MyRGBD"
    assert compose("pretrain", [f"data.path={mine}", "data.name=lab"]).data.name == "lab"
    assert compose("sod", [f"data.path={mine}"]).data.name == "MyRGBD"
    from solo_rgbd.data.sources import _say_if_shrunk

    class Store:
        meta = type("M", (), {"sizes": [(240, 320)] * 5})()

    import io
    from contextlib import redirect_stderr

    err = io.StringIO()
    with redirect_stderr(err):
        _say_if_shrunk(Store(), 56, "the train pairs of data 'MyRGBD'", "data.image_size")
    assert "about 320x240 (median)" in err.getvalue() and "data.image_size=N" in err.getvalue()


# ----- 3. compare on your own data --------------------------------------------------------------
def test_compare_takes_data_path_and_a_grid_file_of_your_own(tmp_path, capsys):
    from solo_rgbd.compare.runner import compose_experiment

    cfg = compose_experiment(["experiment=quick", "data.path=/data/mine", "test_sets=[]"])
    assert "data.path=/data/mine" in cfg.pretrain and "data.path=/data/mine" in cfg.sod
    assert "test_sets=[]" in cfg.sod and "test_sets=[]" not in cfg.pretrain
    grid = tmp_path / "my_grid.yaml"
    quick = Path(__file__).resolve().parents[1] / "configs" / "compare" / "quick.yaml"
    grid.write_text(quick.read_text().replace("name: quick", "name: mine"))
    own = compose_experiment([str(grid), "seeds=[0,1]"])
    assert own.name == "mine" and list(own.seeds) == [0, 1]
    assert main(["compare", str(grid), "--cfg"]) == 0
    assert "name: mine" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="grid file .* does not exist"):
        compose_experiment([str(tmp_path / "nope.yaml")])


def test_plan_marks_rows_whose_shared_settings_differ_and_controlled_aligns_them(capsys):
    from solo_rgbd.compare.runner import compose_experiment, pretrain_config

    # the quick grid without its per-method alignment: MoCo keeps its quick preset
    args = ["experiment=quick", "~method_overrides", "rows=[{name: MBCF, method: mbcf}, "
            "{name: MoCo, method: mocov2plus}]"]  # fmt: skip
    assert main(["compare", *args, "--plan"]) == 0
    plan = capsys.readouterr().out
    moco = next(line for line in plan.splitlines() if line.startswith("| MoCo |"))
    assert "lr, momentum, shuffle-BN" in moco  # the three (and epochs here)
    assert "reference row: MBCF" in plan
    cfg = compose_experiment([*args, "controlled=true"])
    row = {"name": "MoCo", "method": "mocov2plus", "init": "pretrain", "overrides": []}
    ref = {"name": "MBCF", "method": "mbcf", "init": "pretrain", "overrides": []}
    moco_cfg = pretrain_config(cfg, row, 0, Path("/tmp/x"))
    mbcf_cfg = pretrain_config(cfg, ref, 0, Path("/tmp/x"))
    assert moco_cfg.method_kwargs.shuffle_bn == mbcf_cfg.method_kwargs.shuffle_bn
    assert moco_cfg.method_kwargs.momentum == mbcf_cfg.method_kwargs.momentum
    assert moco_cfg.optimizer.lr == mbcf_cfg.method_kwargs.stage1_lr
    assert moco_cfg.trainer.max_epochs == (
        mbcf_cfg.method_kwargs.stage1_epochs + mbcf_cfg.method_kwargs.stage2_epochs
    )


# ----- 5. help --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [
        ["--help"], ["pretrain", "--help"], ["sod", "--help"], ["sod", "train", "--help"],
        ["sod", "eval", "--help"], ["sod", "predict", "--help"], ["sod", "score", "--help"],
        ["data", "--help"], ["data", "check", "--help"], ["data", "pack", "--help"],
        ["data", "synth", "--help"], ["compare", "--help"], ["ckpt", "--help"],
        ["report", "--help"],
    ],
)  # fmt: skip
def test_every_subcommand_help_exits_0_in_plain_text(args, capsys):
    with pytest.raises(SystemExit) if args[0] in ("data", "report") else _nothing():
        assert main(args) == 0
    out = capsys.readouterr().out
    assert out and "``" not in out and ":mod:" not in out  # no reStructuredText


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_help_lists_the_keys_and_cfg_job_prints_the_config(capsys):
    assert main(["sod", "train", "--help"]) == 0
    out = capsys.readouterr().out
    assert "data.{name, path" in out and "image_size" in out and "data.{image_size" not in out
    assert main(["pretrain", "--cfg", "job", "method=mbcf"]) == 0
    assert "method: mbcf" in capsys.readouterr().out


# ----- 6-8. the bar, resume, the report ---------------------------------------------------------
def test_the_bar_shows_no_v_num_and_whole_numbers_whole():
    from types import SimpleNamespace

    from solo_rgbd.engine.progress import RunProgressBar

    bar = RunProgressBar()
    bar.show({"stage": 1.0, "loss": 8.33})
    trainer = SimpleNamespace(loggers=[], progress_bar_metrics={}, logger=None)
    from unittest import mock

    with mock.patch(
        "lightning.pytorch.callbacks.TQDMProgressBar.get_metrics", return_value={"v_num": "974c"}
    ):
        shown = bar.get_metrics(trainer, None)
    assert shown == {"stage": 1, "loss": 8.33}


def test_a_session_without_a_recorded_end_is_named_in_the_report(tmp_path):
    from solo_rgbd.reports.build import write_report
    from tests.reports.test_run_report import _run

    run = _run(tmp_path)
    sessions = [
        {"started": "a", "ended": None, "status": "running", "device": {}},
        {"started": "b", "ended": "c", "status": "finished", "device": {}},
        {"started": "d", "ended": None, "status": "running", "device": {}},
    ]
    (run / "run.json").write_text(json.dumps({"sessions": sessions, "wall_s_total": 1}))
    page = write_report(run).read_text()
    assert page.count("ended without a record (killed?)") == 2  # no process holds the run


@pytest.mark.slow
def test_a_resumed_run_says_where_it_resumed(tmp_path):
    over = tiny_overrides(tmp_path, **SHORT_MBCF, run_name="r")
    env = {**os.environ, "SOLO_RGBD_CACHE": str(tmp_path / "c")}
    cli = [sys.executable, "-m", "solo_rgbd.cli", "pretrain", *over]
    first = subprocess.run([*cli, "trainer.max_epochs=1"], env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    again = subprocess.run([*cli, "resume=last"], env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    ckpt = tmp_path / "outputs" / "mbcf" / "r" / "checkpoints" / "last.ckpt"
    assert f"resumed at epoch 1, step 4 from {ckpt}" in again.stdout
