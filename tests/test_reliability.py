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


# ======== issue 43: code behind a boundary it does not control ==================================
def _bounded(args: list[str], timeout: float = 120, env: dict | None = None):
    """The CLI in its own process, so that a read that blocks fails the test instead of
    hanging it."""
    import subprocess
    import sys

    env = {**os.environ, **(env or {})}
    cmd = [sys.executable, "-m", "solo_rgbd.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


# ----- 1-2. compare owns only what it made -------------------------------------------------------
RANDOM_ROW = "rows=[{name: Random, init: random}]"


def test_compare_into_a_users_folder_writes_nothing(tmp_path, capsys):
    mine = tmp_path / "u"
    mine.mkdir()
    for name in ("tables.md", "all_rows.csv", "grid.json"):
        (mine / name).write_text("MINE")
    assert main(["compare", "experiment=quick", f"out={mine}", RANDOM_ROW]) == 2
    err = capsys.readouterr().err
    assert "is not a grid 'solo-rgbd compare' made" in err and "Traceback" not in err
    assert sorted(p.name for p in mine.iterdir()) == ["all_rows.csv", "grid.json", "tables.md"]
    assert all((mine / n).read_text() == "MINE" for n in ("tables.md", "all_rows.csv", "grid.json"))


def test_rows_whose_names_share_a_cell_folder_are_refused_by_name(tmp_path, capsys):
    rows = "rows=[{name: Random, init: random}, {name: random, method: mbcf}]"
    assert main(["compare", "experiment=quick", f"out={tmp_path / 'g'}", rows]) == 2
    err = capsys.readouterr().err
    assert "rows 'Random' and 'random' would share the cell folder cells/random" in err
    assert not (tmp_path / "g").exists()


def test_a_table_title_that_names_a_file_of_the_grid_is_refused(tmp_path, capsys):
    tables = "tables=[{title: grid, rows: [Random], metrics: [maxF]}]"
    assert main(["compare", "experiment=quick", f"out={tmp_path / 'g'}", RANDOM_ROW, tables]) == 2
    assert "would name its files 'grid.*'" in capsys.readouterr().err
    assert not (tmp_path / "g").exists()


def _scores_row(report) -> dict:
    return {"synthetic": {"all": {"n": 2, **{k: 0.5 for k, _, _ in report.metrics}}}}


@pytest.mark.parametrize("how", ["garbage", "list", "symlink-out", "fifo", "folder"])
def test_a_damaged_or_foreign_done_json_reruns_its_cell_with_one_line(tmp_path, capsys, how):
    from solo_rgbd.commands.compare import task_of
    from solo_rgbd.compare.cells import CellResult
    from solo_rgbd.compare.runner import compose_experiment, run_compare

    out = tmp_path / "g"
    cfg = compose_experiment(["experiment=quick", f"out={out}", RANDOM_ROW, "seeds=[0]"])
    report, ran = task_of(cfg).report, []

    def cell(cfg, row, seed, folder):
        ran.append(row["name"])
        return CellResult(_scores_row(report))

    run_compare(cfg, cell, report)
    done = out / "cells" / "random" / "seed0" / "done.json"
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(done.read_text())  # whole scores, but outside the grid
    done.unlink()
    if how == "garbage":
        done.write_bytes(b"\xff{not json")
    elif how == "list":
        done.write_text("[1, 2]")
    elif how == "symlink-out":
        done.symlink_to(elsewhere)
    elif how == "fifo":
        os.mkfifo(done)
    else:
        done.mkdir()
    capsys.readouterr()
    run_compare(cfg, cell, report)
    out_text = capsys.readouterr().out
    assert ran == ["Random", "Random"] and "running the cell again" in out_text
    assert json.loads(done.read_text())["synthetic"]["all"]["n"] == 2  # a regular file again
    assert elsewhere.is_file()  # the file behind the link is left alone


# ----- 3-4. report reads only regular files, bounded; one damaged part is named ------------------
def test_report_does_not_block_on_fifos_and_names_them(tmp_path):
    run = _run(tmp_path)
    (run / "run.json").write_text('{"sessions": []}')
    for rel in ("run.json", "encoders/depth.safetensors", "logs/metrics.csv"):
        (run / rel).unlink(missing_ok=True)
        os.mkfifo(run / rel)
    done = _bounded(["report", str(run)], timeout=60)
    assert done.returncode == 0, done.stderr
    page = (run / "report.html").read_text()
    assert page.count("not a regular file") >= 2 and "Traceback" not in done.stderr


def test_report_escapes_names_that_are_not_utf8_and_bounds_images_and_hashes(tmp_path):
    run = _run(tmp_path)
    (run / "encoders" / os.fsdecode(b"odd\xff.safetensors")).write_bytes(b"x")
    big = run / "encoders" / "huge.safetensors"
    with open(big, "wb") as f:
        f.truncate(64 << 30)  # a 64 GiB sparse export: never read whole
    (run / "encoders" / "encoders.json").write_text(
        json.dumps({"encoders": {"huge": {"file": "huge.safetensors", "sha256": "ab" * 32}}})
    )
    import time

    start = time.monotonic()
    page = write_report(run).read_text(errors="replace")
    assert time.monotonic() - start < 30
    assert "odd\\udcff" in page and "ab" * 32 + " (encoders.json" in page
    # an eval folder whose picture claims 30000 x 30000 pixels: named, not decoded
    import struct
    import zlib

    ev = tmp_path / "ev"
    (ev / "predictions").mkdir(parents=True)
    (ev / "predictions" / ".s.solo-rgbd").touch()
    (ev / "results.json").write_text("{}")
    q = ev / "qualitative" / "s"
    q.mkdir(parents=True)
    (q / "index.json").write_text(json.dumps({"ranked": {"best": "a"}}))
    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    png = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk
    png += struct.pack(">I", zlib.crc32(chunk)) + b"\0\0\0\0IEND\xaeB`\x82"
    (q / "a.rgb.png").write_bytes(png)
    page = write_report(ev).read_text()
    assert "a.rgb.png" in page and ("not decoded" in page or "unreadable" in page)


def test_one_damaged_part_is_named_and_the_rest_of_the_page_kept(tmp_path, monkeypatch):
    import solo_rgbd.reports.run as run_pages

    def broken(path, page):
        raise KeyError("started")

    monkeypatch.setattr(run_pages, "run_info_section", broken)
    page = write_report(_run(tmp_path)).read_text()
    assert "the sessions (run.json): not shown" in page
    assert "Exported encoders" in page and "Last logged values" in page


# ----- 4. store plug-ins are checked at the door -------------------------------------------------
class _EntryPoint:
    """What importlib.metadata gives for ``NAME = pkg.module:open_fn``."""

    def __init__(self, load, value="pkg.module:open_fn"):
        self._load, self.value = load, value

    def load(self):
        return self._load()


def _store(synth_root, **changes):
    """A plug-in store over the synthetic set whose batches are changed as ``changes`` say."""
    from solo_rgbd.data.decode import DecodeSpec, RootSpec
    from solo_rgbd.data.store import open_store

    good = open_store(DecodeSpec((RootSpec(str(synth_root)),), size=32), "ram")

    class Plug:
        meta, device = good.meta, good.device
        has_gt = changes.get("has_gt", good.has_gt)

        def __len__(self):
            return changes.get("len", len(good))

        def batch(self, idx):
            if "raise" in changes:
                raise changes["raise"]
            out = good.batch(idx)
            if "rgb" in changes:
                out["rgb"] = changes["rgb"](out["rgb"])
            if changes.get("half"):
                out = {k: v[: max(1, len(v) // 2)] for k, v in out.items()}
            if changes.get("index0"):
                out["index"] = torch.zeros_like(out["index"])
            if changes.get("no_gt"):
                out.pop("gt", None)
            return out

        def subset(self, idx):
            return good.subset(idx)

        def materialize(self, device="cpu"):
            return good.materialize(device)

    return Plug()


def _recurse(n=0):
    return _recurse(n + 1)


BAD_STORES = {
    "float-rgb": dict(rgb=lambda t: t.float()),
    "int64-rgb": dict(rgb=lambda t: t.long()),
    "twice-the-size": dict(rgb=lambda t: t.repeat_interleave(2, -1).repeat_interleave(2, -2)),
    "half-a-batch": dict(half=True),
    "all-index-0": dict(index0=True),
    "lies-about-len": dict(len=10_000),
    "lies-about-has_gt": dict(no_gt=True),
    "raises": dict(raise_=RuntimeError("boom")),
    "recurses": dict(recurse=True),
}


@pytest.mark.parametrize("case", [*BAD_STORES, "returns-None", "sys.exit", "import-error"])
def test_a_store_plugin_that_breaks_its_contract_is_named_before_training(synth_root, case):
    from solo_rgbd.data.decode import DecodeSpec, RootSpec
    from solo_rgbd.data.plugin_store import open_plugin
    from solo_rgbd.errors import DataError

    spec = DecodeSpec((RootSpec(str(synth_root)),), size=32)
    changes = dict(BAD_STORES.get(case, {}))
    if "raise_" in changes:
        changes["raise"] = changes.pop("raise_")
    if changes.pop("recurse", False):
        changes["raise"] = None
    load = {
        "returns-None": lambda: lambda spec: None,
        "sys.exit": lambda: lambda spec: __import__("sys").exit(0),
        "import-error": lambda: __import__("no_such_plugin_module"),
    }.get(case, lambda: lambda spec: _store(synth_root, **changes))
    if case == "recurses":
        load = lambda: lambda spec: _recurse()  # noqa: E731
    with pytest.raises(DataError, match="store plug-in 'bad' .*Nothing was trained on it"):
        open_plugin("bad", _EntryPoint(load), spec)


def test_a_plugin_named_like_a_built_in_store_and_settings_it_cannot_honour_are_refused(
    synth_root, monkeypatch
):
    from omegaconf import OmegaConf

    import solo_rgbd.data.store as store
    from solo_rgbd.data.decode import DecodeSpec, RootSpec
    from solo_rgbd.data.sources import build_from_config

    monkeypatch.setattr(store, "store_entry_points", lambda: {"ram": _EntryPoint(lambda: None)})
    spec = DecodeSpec((RootSpec(str(synth_root)),), size=32)
    with pytest.raises(ConfigError, match="takes the name of solo-rgbd's built-in store 'ram'"):
        store.open_store(spec, "ram")
    from solo_rgbd.config import compose

    data = compose("pretrain", [f"data.path={synth_root}", "data.format=npz", "data.cache=disk"])
    with pytest.raises(ConfigError, match="data.cache=disk cannot apply with data.format=npz"):
        build_from_config(OmegaConf.create(data.data))


def test_a_plugin_that_exits_gets_exit_2_with_its_name_not_a_silent_0(tmp_path):
    from tests.plugins import plugin_env

    site = tmp_path / "site"
    (site / "exitstore").mkdir(parents=True)
    (site / "exitstore" / "__init__.py").write_text(
        "import sys\n\ndef open_fn(spec):\n    sys.exit(0)\n"
    )
    meta = site / "exitstore-0.1.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: exitstore\nVersion: 0.1\n")
    (meta / "entry_points.txt").write_text("[solo_rgbd.stores]\nquits = exitstore:open_fn\n")
    env = plugin_env(site, tmp_path / "cache")
    args = ["pretrain", "backbone=tiny", "data.format=quits", f"data.path={tmp_path}"]
    done = _bounded([*args, f"output_dir={tmp_path / 'o'}"], env=env)
    assert done.returncode == 2, done.stderr
    assert "store plug-in 'quits' (exitstore:open_fn)" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "o").exists()


# ----- 5-6. tracker state is data from outside ---------------------------------------------------
@pytest.mark.parametrize("text", ["[1, 2]", "{not json", '{"wandb": "../../x"}', '{"mlflow": 3}'])
def test_a_damaged_trackers_json_is_recovered_from_the_checkpoint_or_refused(tmp_path, text):
    from solo_rgbd.engine.trackers import _saved_ids

    (tmp_path / "trackers.json").write_text(text)
    ckpt = tmp_path / "last.ckpt"
    torch.save({"callbacks": {"TrackerRuns": {"ids": {"wandb": "abc123"}}}}, ckpt)
    assert _saved_ids(tmp_path, ckpt) == {"wandb": "abc123"}
    torch.save({"callbacks": {}}, ckpt)
    with pytest.raises(ConfigError, match="trackers.json is damaged"):
        _saved_ids(tmp_path, ckpt)


@pytest.mark.parametrize(
    "extra, match",
    [
        (["loggers=[csv,wandb,wandb]"], "names wandb twice"),
        (["loggers=[csv,mlflow]", "mlflow.experiment="], "mlflow.experiment is empty"),
        (["loggers=[csv,wandb]", "wandb.mode=online"], "needs a W&B API key"),
        (["loggers=[csv,mlflow]", "mlflow.tracking_uri=ftp://x"], "is not a store MLflow opens"),
    ],
)
def test_tracker_settings_are_checked_before_anything_is_written(tmp_path, extra, match):
    import time

    env = {"HOME": str(tmp_path), "WANDB_API_KEY": "", "SOLO_RGBD_CACHE": str(tmp_path / "c")}
    start = time.monotonic()
    done = _bounded(["pretrain", "backbone=tiny", f"output_dir={tmp_path / 'o'}", *extra], env=env)
    assert done.returncode == 2 and match in done.stderr, done.stderr
    assert time.monotonic() - start < 30 and not (tmp_path / "o").exists()


def test_a_missing_mlflow_store_on_resume_starts_a_new_run_with_one_line(tmp_path, capsys):
    from omegaconf import OmegaConf

    from solo_rgbd.engine.trackers import _mlflow

    cfg = OmegaConf.create(
        {"mlflow": {"tracking_uri": None, "experiment": "e", "run_name": None,
                    "parent_run_id": None}}
    )  # fmt: skip
    logger = _mlflow(cfg, tmp_path, "0123456789abcdef0123456789abcdef")
    assert logger._run_id is None  # a new run, not a crash in MLflow
    assert "a new MLflow run starts" in capsys.readouterr().err


# ----- 7. resume=auto never discards a complete checkpoint ---------------------------------------
def test_resume_auto_keeps_a_complete_checkpoint_a_kill_left_beside_a_missing_last_ckpt(tmp_path):
    from omegaconf import OmegaConf

    run = tmp_path / "mbcf" / "r"
    (run / "checkpoints").mkdir(parents=True)
    (run / ".run.lock").touch()
    cut = run / "checkpoints" / ".last.ckpt.1a2b3c4d.tmp"
    torch.save({"state_dict": {}}, cut)  # whole: its zip directory is written
    cfg = OmegaConf.create(
        {"output_dir": str(tmp_path), "method": "mbcf", "run_name": "r", "resume": "auto"}
    )
    with pytest.raises(ConfigError, match="holds a complete checkpoint .*mv "):
        plan_run(cfg)
    assert cut.is_file()
    cut.write_bytes(b"PK\x03\x04 cut short")  # a save cut mid-file: nothing to keep
    assert plan_run(cfg).ckpt is None


# ----- 8. smaller items ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "extra, note",
    [
        ({"fusion.mask_mode": "none", "fusion.mask_ratio": "0.25"}, "mask_ratio=0.25 does nothing"),
        ({"fusion.mask_mode": "topk", "fusion.random_draw": "independent"}, "random_draw="),
        ({"fusion.mask_mode": "random", "fusion.mask_ratio": "0"}, "mask_ratio=0 masks nothing"),
        ({"schedule": "intra_only", "fusion.mask_mode": "bottomk"}, "schedule=intra_only"),
    ],
)
def test_mask_settings_that_do_nothing_get_one_line_each(tmp_path, capsys, extra, note):
    from solo_rgbd.config import compose
    from solo_rgbd.methods import METHODS
    from tests.conftest import tiny_overrides

    over = {f"method_kwargs.{k}": v for k, v in extra.items()}
    METHODS["mbcf"](compose("pretrain", tiny_overrides(tmp_path, **over)))
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("note: fusion")]
    assert len(lines) == 1 and note in lines[0], lines


@pytest.mark.slow
def test_a_run_without_wandb_in_loggers_never_imports_it(tmp_path):
    import subprocess
    import sys

    from tests.conftest import SHORT_MBCF, tiny_overrides

    code = (
        "import sys\nfrom solo_rgbd.cli import main\nrc = main(sys.argv[1:])\n"
        "print('wandb imported' if 'wandb' in sys.modules else 'no wandb')\nsys.exit(rc)"
    )
    args = ["pretrain", *tiny_overrides(tmp_path, **SHORT_MBCF)]
    env = {**os.environ, "SOLO_RGBD_CACHE": str(tmp_path / "c")}
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=env, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("no wandb")


@pytest.mark.slow
def test_a_file_size_limit_is_named_as_one_not_as_permissions(tmp_path):
    import resource
    import subprocess
    import sys

    from tests.conftest import SHORT_MBCF, tiny_overrides

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (4 << 20, 4 << 20))  # a 15 MB checkpoint fails

    args = [
        sys.executable,
        "-m",
        "solo_rgbd.cli",
        "pretrain",
        *tiny_overrides(tmp_path, **SHORT_MBCF),
    ]
    env = {**os.environ, "SOLO_RGBD_CACHE": str(tmp_path / "c")}
    done = subprocess.run(
        args, capture_output=True, text=True, env=env, timeout=300, preexec_fn=limit
    )
    assert done.returncode == 2, done.stderr
    assert "ulimit -f" in done.stderr and "permissions" not in done.stderr


# ----- the damage matrix: every file a command reads, damaged every way ---------------------------
HOW = (
    "absent", "empty", "truncated", "wrong-type", "wrong-shape", "fifo", "symlink-out", "huge",
    "non-utf8-name",
)  # fmt: skip


def _damage_file(file: Path, how: str, outside: Path) -> None:
    original = file.read_bytes() if file.is_file() else b"{}"
    if how == "non-utf8-name":  # a sibling whose name is not UTF-8, the file kept
        (file.parent / os.fsdecode(b"\xff" + file.name.encode())).write_bytes(original)
        return
    file.unlink(missing_ok=True)
    if how == "empty":
        file.write_bytes(b"")
    elif how == "truncated":
        file.write_bytes(original[: len(original) // 2])
    elif how == "wrong-type":
        file.mkdir()
    elif how == "wrong-shape":
        file.write_bytes(b"[1, 2]" if file.suffix == ".json" else b"\x00,\n,x")
    elif how == "fifo":
        os.mkfifo(file)
    elif how == "symlink-out":
        (outside / file.name).write_bytes(original)
        file.symlink_to(outside / file.name)
    elif how == "huge":
        with open(file, "wb") as f:
            f.truncate(1 << 30)  # sparse: 1 GiB on paper


def _within(seconds: float, fn) -> object:
    """``fn()`` in a thread that must finish in ``seconds`` (a blocked read fails, not hangs)."""
    import threading

    box: dict = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except Exception as exc:  # noqa: BLE001 - the caller judges it
            box["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), "blocked"
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _surface(kind: str, tmp_path: Path) -> tuple[Path, list[str]]:
    """A folder of ``kind`` and the files a command reads from it."""
    if kind in ("run", "grid"):
        folder, files = _folders(tmp_path)[kind]
        return folder, files[:4]
    folder = tmp_path / kind
    folder.mkdir()
    if kind == "pack":
        (folder / "solo_rgbd.json").write_text(json.dumps({"format": 1, "n": 1}))
        (folder / "index.json").write_text(json.dumps({"chunks": []}))
        return folder, ["solo_rgbd.json", "index.json"]
    (folder / "trackers.json").write_text(json.dumps({"wandb": "abc"}))
    torch.save({"callbacks": {"TrackerRuns": {"ids": {"wandb": "abc"}}}}, folder / "last.ckpt")
    return folder, ["trackers.json"]


def _read(kind: str, folder: Path):
    """What the command does with the folder: a page (report), the pack's manifest (training
    from a pack), the tracker run ids (resume)."""
    from solo_rgbd.data.pack_store import open_manifest
    from solo_rgbd.engine.trackers import _saved_ids

    if kind in ("run", "grid"):
        return lambda: write_report(folder)
    if kind == "pack":
        return lambda: open_manifest(folder)
    return lambda: _saved_ids(folder, folder / "last.ckpt")


@pytest.mark.parametrize("kind", ["run", "grid", "pack", "trackers"])
@pytest.mark.parametrize("how", HOW)
def test_every_file_a_command_reads_damaged_every_way_is_exit_0_or_2(tmp_path, kind, how):
    """Each file damaged one way: the read returns or raises solo-rgbd's one-paragraph error
    (exit 2), within 30 s, and writes nothing outside the folder."""
    import contextlib
    import shutil

    from solo_rgbd.errors import SoloRGBDError

    outside = tmp_path / "outside"
    outside.mkdir()
    folder, files = _surface(kind, tmp_path)
    for i, name in enumerate(files):
        work = tmp_path / f"copy{i}"
        shutil.copytree(folder, work, symlinks=True)
        _damage_file(work / name, how, outside)
        there = {p.name: p.read_bytes() for p in outside.iterdir()}
        with contextlib.suppress(SoloRGBDError):
            _within(30, _read(kind, work))
        assert {p.name: p.read_bytes() for p in outside.iterdir()} == there, name
