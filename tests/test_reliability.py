"""Issue 30: damaged and crafted inputs to the newer surfaces are refused or named, never a
traceback, never a write outside what solo-rgbd made, never a read outside the folder."""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import pytest
import torch

from solo_rgbd.cli import main
from solo_rgbd.engine.run import plan_run
from solo_rgbd.engine.run_info import RunInfo
from solo_rgbd.errors import CheckpointError, ConfigError
from solo_rgbd.reports.build import write_report
from tests.reports.test_run_report import _run


# ----- reports: damaged files give a page that names them ------------------------------------
def _damage(run: Path, case: str) -> None:
    if case == "non-utf8":
        (run / "config.yaml").write_bytes(b"method: mbcf\nname: \xff\xfe\x80\n")
        (run / "logs" / "metrics.csv").write_bytes(b"step,loss\n0,1\n1,\xff\n")
    elif case == "bad-json":
        (run / "run.json").write_text("{not json")
        (run / "encoders" / "encoders.json").write_text("[1, 2")
    elif case == "wrong-types":
        (run / "run.json").write_text(json.dumps({"sessions": ["x", {"device": 3}, 7]}))
        (run / "encoders" / "encoders.json").write_text("[]")
    elif case == "huge-field":
        with open(run / "logs" / "metrics.csv", "a") as f:
            f.write("0," + "9" * 200_000 + "\n")
    elif case == "sessions-not-a-list":
        (run / "run.json").write_text(json.dumps({"sessions": {"a": 1}, "wall_s_total": "x"}))


@pytest.mark.parametrize(
    "case", ["non-utf8", "bad-json", "wrong-types", "huge-field", "sessions-not-a-list"]
)
def test_a_damaged_run_gets_a_page_that_names_the_damage(tmp_path, capsys, case):
    run = _run(tmp_path)
    _damage(run, case)
    assert main(["report", str(run)]) == 0
    page = (run / "report.html").read_text()
    assert 'id="missing"' in page and "Traceback" not in capsys.readouterr().err


def test_a_task_and_an_eval_folder_with_wrong_types_get_a_page(tmp_path):
    ev = tmp_path / "eval"
    (ev / "predictions").mkdir(parents=True)
    (ev / "predictions" / ".s.solo-rgbd").touch()
    (ev / "results.json").write_text(json.dumps({"m": {"s": "not a dict"}}))
    (ev / "curves.json").write_text(json.dumps({"s": [1, 2]}))
    (ev / "qualitative" / "s").mkdir(parents=True)
    (ev / "qualitative" / "s" / "index.json").write_text(json.dumps({"ranked": ["a"]}))
    page = write_report(ev).read_text()
    assert 'id="missing"' in page


def test_reports_read_nothing_outside_their_folder(tmp_path):
    """Symlinks out of the run and ``..`` stems are named, and their files never embedded."""
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-TOKEN")
    run = _run(tmp_path)
    (run / "config.yaml").unlink()
    (run / "config.yaml").symlink_to(tmp_path / "cfg.yaml")
    (tmp_path / "cfg.yaml").write_text("method: mbcf\nsecret: TOP-SECRET-TOKEN\n")
    (run / "encoders" / "escape.safetensors").symlink_to(secret)
    page = write_report(run).read_text()
    assert "TOP-SECRET-TOKEN" not in page and "not read" in page
    # a qualitative index whose stems climb out of the folder
    ev = tmp_path / "ev"
    (ev / "predictions").mkdir(parents=True)
    (ev / "predictions" / ".s.solo-rgbd").touch()
    (ev / "results.json").write_text("{}")
    q = ev / "qualitative" / "s"
    q.mkdir(parents=True)
    (q / "index.json").write_text(json.dumps({"ranked": {"best": "../../../secret"}}))
    from PIL import Image

    Image.new("RGB", (4, 4), (255, 0, 0)).save(tmp_path / "secret.rgb.png")
    page = write_report(ev).read_text()
    assert "outside" in page and "data:image/webp" not in page


# ----- resume= writes only into solo-rgbd's run folders --------------------------------------
def _resume_cfg(tmp_path: Path, ckpt: Path, run_name: str | None = None):
    from omegaconf import OmegaConf

    return OmegaConf.create(
        {"output_dir": str(tmp_path), "method": "mbcf", "run_name": run_name, "resume": str(ckpt)}
    )


def test_resume_into_a_folder_solo_rgbd_did_not_make_is_refused(tmp_path):
    mine = tmp_path / "mine"
    (mine / "checkpoints").mkdir(parents=True)
    (mine / "config.yaml").write_text("{}")
    (mine / "checkpoints" / "last.ckpt").write_bytes(b"x")
    with pytest.raises(ConfigError, match="does not write into it"):
        plan_run(_resume_cfg(tmp_path, mine / "checkpoints" / "last.ckpt"))
    (mine / ".run.lock").touch()  # a run folder of solo-rgbd's, copied whole
    assert plan_run(_resume_cfg(tmp_path, mine / "checkpoints" / "last.ckpt")).run_dir == mine
    with pytest.raises(ConfigError, match="run_name=other names another run"):
        plan_run(_resume_cfg(tmp_path, mine / "checkpoints" / "last.ckpt", "other"))


# ----- run.json and ckpt info -----------------------------------------------------------------
def test_run_json_with_entries_of_the_wrong_type_starts_over(tmp_path):
    from tests.engine.test_run_info import TRAINER

    (tmp_path / "run.json").write_text(json.dumps({"sessions": ["x", 3]}))
    info = RunInfo(tmp_path)
    info.start(TRAINER, None)
    info.end("finished")
    (session,) = json.loads((tmp_path / "run.json").read_text())["sessions"]
    assert session["status"] == "finished"


@pytest.mark.parametrize(
    "ckpt", [{"state_dict": [1, 2]}, {"hyper_parameters": {"cfg": [1]}}, {"state_dict": {"a": "x"}}]
)
def test_ckpt_info_on_parts_of_the_wrong_type_is_exit_2(tmp_path, capsys, ckpt):
    path = tmp_path / "odd.ckpt"
    torch.save(ckpt, path)
    assert main(["ckpt", "info", str(path)]) == 2
    err = capsys.readouterr().err
    assert "not a checkpoint solo-rgbd wrote" in err or "wrong" in err
    assert "Traceback" not in err


def test_a_checkpoint_that_unpacks_to_far_more_than_its_size_is_not_loaded(tmp_path, capsys):
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(4)}, buf)
    plain = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    bomb = tmp_path / "bomb.ckpt"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as out:
        for info in plain.infolist():
            out.writestr(info.filename, plain.read(info.filename))
        out.writestr("archive/data/99", b"\0" * (96 << 20))  # 96 MB of zeros: ~0.1 MB packed
    assert os.path.getsize(bomb) < 1 << 20
    with pytest.raises(CheckpointError, match="would unpack to"):
        from solo_rgbd.utils.safe_load import load_user_checkpoint

        load_user_checkpoint(bomb, "checkpoint")
    assert main(["ckpt", "info", str(bomb)]) == 2 and "would unpack" in capsys.readouterr().err


# ----- the disk cache: a damaged index is a one-paragraph error ---------------------------------
@pytest.mark.parametrize("index", ["no-stems", "empty-list", "other-size"])
def test_a_damaged_disk_cache_names_its_folder(synth_root, tmp_path, index):
    import shutil

    from solo_rgbd.data import disk_cache
    from solo_rgbd.data.decode import RootSpec
    from solo_rgbd.errors import DataError
    from tests.data.stores import store_of as build_cache

    root = tmp_path / "ds"
    shutil.copytree(synth_root, root)
    roots = [RootSpec(str(root))]
    build = dict(storage="disk", cache_dir=tmp_path / "decoded")
    build_cache(roots, size=40, **build)
    (folder,) = [p for p in (tmp_path / "decoded").iterdir() if p.is_dir()]
    data = json.loads((folder / "index.json").read_text())
    if index == "no-stems":
        del data["stems"]
    elif index == "empty-list":
        data = []
    (folder / "index.json").write_text(json.dumps(data))
    size = 16 if index == "other-size" else None
    with pytest.raises(DataError, match="is unreadable"):
        disk_cache.open_disk_cache(folder, size)


# ----- a re-probe: every file a page reads, damaged every way, never a traceback --------------
CORRUPT = {
    "not-utf8": b"\xff\xfe\x00\x80",
    "cut-json": b'{"sessions": [',
    "list": b"[]",
    "string": b'"x"',
    "number": b"3",
    "wrong-fields": b'{"sessions": 1, "rows": "x", "ranked": 2, "bars": 3, "headline": 5, '
    b'"fixed": 6, "n": "x", "all": 7, "synthetic": [1]}',
    "wrong-rows": b'{"rows": [{"name": 1, "seeds": "x", "cells": 2}, 7], "bars": ["maxF"]}',
    "nested": b'{"Random": {"synthetic": {"all": "x"}}, "MBCF": [1], "s": {"pr_r": "x"}}',
}


def _task_run(tmp_path: Path) -> Path:
    run = tmp_path / "sod" / "t"
    (run / "logs").mkdir(parents=True)
    (run / ".run.lock").touch()
    (run / "config.yaml").write_text("encoders: random\n")
    (run / "summary.json").write_text('{"best_score": 0.1}')
    (run / "logs" / "metrics.csv").write_text("epoch,step,train/loss\n0,0,1.0\n0,1,0.5\n")
    ev = run / "eval"
    (ev / "qualitative" / "s").mkdir(parents=True)
    (ev / "results.json").write_text(json.dumps({"m": {"s": {"all": {"maxF": 0.5, "n": 2}}}}))
    (ev / "curves.json").write_text(json.dumps({"s": {"pr_r": [0, 1], "pr_p": [1, 0]}}))
    (ev / "qualitative" / "s" / "index.json").write_text('{"ranked": {"best": "a"}}')
    return run


def _folders(tmp_path: Path) -> dict[str, tuple[Path, list[str]]]:
    from tests.reports.test_grid_report import _grid

    run = _run(tmp_path)
    (run / "run.json").write_text('{"sessions": []}')
    (run / "encoders" / "encoders.json").write_text("{}")
    files_run = ["run.json", "encoders/encoders.json", "logs/metrics.csv", "config.yaml"]
    files_task = ["summary.json", "eval/results.json", "eval/curves.json", "logs/metrics.csv"]
    files_task.append("eval/qualitative/s/index.json")
    files_grid = ["grid.json", "all_rows.json", "finetune.json", "tables.md"]
    files_grid.append("cells/MBCF/seed1/failed.json")
    return {
        "run": (run, files_run),
        "task": (_task_run(tmp_path), files_task),
        "grid": (_grid(tmp_path), files_grid),
    }


@pytest.mark.parametrize("kind", ["run", "task", "grid"])
def test_every_file_a_page_reads_damaged_every_way_gives_a_page(tmp_path, kind):
    folder, files = _folders(tmp_path)[kind]
    pristine = {f: (folder / f).read_bytes() for f in files}
    failures = []
    for name in files:
        for how, data in CORRUPT.items():
            (folder / name).write_bytes(data)
            try:
                page = write_report(folder)
                assert page.stat().st_size > 0
            except Exception as exc:  # noqa: BLE001 - any escape is the failure
                failures.append(f"{name} {how}: {type(exc).__name__}: {exc}")
            (folder / name).write_bytes(pristine[name])
    assert not failures, "\n".join(failures)
