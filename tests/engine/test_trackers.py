"""Experiment trackers (issue 34): W&B offline and MLflow file stores get what metrics.csv gets,
at the same steps, plus the config and the export's hash; a killed and resumed run is one
tracker run without a repeated step; a missing package is exit 2; no Lightning tip is printed.
Nothing here reaches the network (W&B offline, MLflow in a folder)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from solo_rgbd.cli import main
from tests.conftest import SHORT_MBCF, tiny_overrides
from tests.engine.test_kill_resume import TINY
from tests.test_path_safety import SOD_TINY

wandb = pytest.importorskip("wandb")
mlflow = pytest.importorskip("mlflow")
os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # this test's own reading client


def wandb_records(run_folder: Path) -> list:
    """The records of W&B offline runs (``run-*.wandb``: LevelDB-style log blocks of protobuf
    ``Record`` messages), in order."""
    from wandb.proto import wandb_internal_pb2 as pb

    out = []
    for path in sorted(run_folder.glob("wandb/offline-run-*/run-*.wandb")):
        data, pos, buf = path.read_bytes(), 7, b""  # after the ":W&B" header
        while pos + 7 <= len(data):
            left = 32768 - pos % 32768
            if left < 7:
                pos += left
                continue
            length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
            if length == 0 and kind == 0:
                pos += left
                continue
            chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
            if kind in (1, 4):  # a whole record, or the last piece of one
                record = pb.Record()
                record.ParseFromString(buf + chunk if kind == 4 else chunk)
                out.append((path.parent.name, record))
                buf = b""
            else:
                buf = chunk if kind == 2 else buf + chunk
    return out


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


def wandb_history(run_folder: Path) -> list[dict]:
    rows = []
    for _, rec in wandb_records(run_folder):
        if rec.WhichOneof("record_type") == "history":
            rows.append({_key(i): json.loads(i.value_json) for i in rec.history.item})
    return rows


def csv_rows(run_folder: Path) -> list[dict]:
    with open(run_folder / "logs" / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def loss_steps_csv(run_folder: Path) -> list[int]:
    return [int(float(r["step"])) for r in csv_rows(run_folder) if r.get("loss")]


def _pretrain(tmp_path: Path, *extra: str) -> Path:
    over = tiny_overrides(tmp_path, **SHORT_MBCF, run_name="t")
    assert main(["pretrain", *over, *extra]) == 0
    return tmp_path / "outputs" / "mbcf" / "t"


def test_wandb_offline_gets_every_metric_row_and_the_config(tmp_path, capsys):
    run = _pretrain(tmp_path, "loggers=[csv,wandb]", "wandb.mode=offline", "wandb.tags=[a,b]")
    err = capsys.readouterr()
    assert "litlogger" not in err.out + err.err  # no Lightning tip
    assert "wandb sync" in err.out  # where the offline run went, and how to upload it
    history = wandb_history(run)
    steps = [int(h["trainer/global_step"]) for h in history if "loss" in h]
    assert steps == loss_steps_csv(run) and len(steps) >= 8
    by_step = {int(float(r["step"])): float(r["loss"]) for r in csv_rows(run) if r.get("loss")}
    assert all(
        abs(h["loss"] - by_step[int(h["trainer/global_step"])]) < 1e-6
        for h in history
        if "loss" in h
    )
    names = set().union(*history)
    assert {"loss", "acc_batch_rgb", "acc_batch_depth"} <= names
    records = wandb_records(run)
    config = {
        _key(i): json.loads(i.value_json)
        for _, r in records
        if r.WhichOneof("record_type") == "config"
        for i in r.config.update
    }
    assert config["backbone.name"] == "test_resnet" and config["data.batch_size"] == 8
    assert config["run_dir"] == str(run.resolve())
    run_record = next(r.run for _, r in records if r.WhichOneof("record_type") == "run")
    assert list(run_record.tags) == ["a", "b"] and run_record.display_name == "t"
    summary = {}
    for _, r in records:
        if r.WhichOneof("record_type") == "summary":
            summary.update({_key(i): json.loads(i.value_json) for i in r.summary.update})
    manifest = json.loads((run / "encoders" / "encoders.json").read_text())
    assert summary["export_sha256_rgb"] == manifest["encoders"]["rgb"]["sha256"]
    assert summary["report"] == str((run / "report.html").resolve())
    ids = json.loads((run / "trackers.json").read_text())
    assert run_record.run_id == ids["wandb"]


def test_mlflow_file_store_reads_back_the_same_metrics_params_and_hash(tmp_path):
    run = _pretrain(tmp_path, "loggers=[csv,mlflow]")
    ids = json.loads((run / "trackers.json").read_text())
    client = mlflow.MlflowClient(f"sqlite:///{(run / 'mlflow.db').resolve()}")
    history = client.get_metric_history(ids["mlflow"], "loss")
    assert [m.step for m in history] == loss_steps_csv(run)
    by_step = {int(float(r["step"])): float(r["loss"]) for r in csv_rows(run) if r.get("loss")}
    assert all(abs(m.value - by_step[m.step]) < 1e-6 for m in history)
    data = client.get_run(ids["mlflow"]).data
    assert data.params["backbone.name"] == "test_resnet" and data.params["run_dir"] == str(
        run.resolve()
    )
    manifest = json.loads((run / "encoders" / "encoders.json").read_text())
    assert data.tags["export_sha256_depth"] == manifest["encoders"]["depth"]["sha256"]
    assert client.get_run(ids["mlflow"]).info.run_name == "t"


def test_a_missing_tracker_package_is_exit_2_and_writes_nothing(tmp_path, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a)
    )
    over = tiny_overrides(tmp_path, **SHORT_MBCF, run_name="m")
    assert main(["pretrain", *over, "loggers=[csv,wandb]"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'solo-rgbd[wandb]'" in err and "Traceback" not in err
    assert not (tmp_path / "outputs" / "mbcf" / "m").exists()
    assert main(["pretrain", *over, "loggers=[csv,comet]"]) == 2
    assert "comet is not a tracker" in capsys.readouterr().err


KILL_OVERRIDES = [*TINY, "loggers=[csv,wandb,mlflow]", "run_name=k"]  # the kill tests' run


def _until_wandb_service_of(pid: int, deadline: float) -> None:
    """W&B's service runs in a session of its own and leaves a moment after its parent died;
    until it has, it holds the run (a resume then gets "run ID is in use")."""
    while True:
        alive = []
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                args = cmdline.read_bytes().split(b"\0")
                stat = (cmdline.parent / "stat").read_text()
            except OSError:
                continue
            if b"--pid" in args and str(pid).encode() in args and ") Z " not in stat:
                alive.append(cmdline.parent.name)
        if not alive:
            return
        assert time.time() < deadline, f"W&B's service {alive} outlived its killed parent"
        time.sleep(0.1)


@pytest.mark.slow
def test_a_killed_and_resumed_run_is_one_tracker_run_without_a_repeated_step(tmp_path):
    out = tmp_path / "out"
    run = out / "mbcf" / "k"
    # a job of its own: not attached to the W&B service of this test process (wandb exports
    # WANDB_SERVICE to children), which would still hold the killed process's run
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    env["SOLO_RGBD_CACHE"] = str(out / "cache")
    cmd = [sys.executable, "-m", "solo_rgbd.cli", "pretrain", *KILL_OVERRIDES, f"output_dir={out}"]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    deadline = time.time() + 600
    # past the first epoch's checkpoint (step 5), so steps 6.. are sent twice if not dropped
    while not (run / "logs" / "metrics.csv").is_file() or len(loss_steps_csv(run)) < 8:
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole job, as a scheduler kills it
    proc.wait()
    _until_wandb_service_of(proc.pid, deadline=time.time() + 120)
    ids_before = json.loads((run / "trackers.json").read_text())
    done = subprocess.run([*cmd, "resume=last"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((run / "trackers.json").read_text()) == ids_before  # the same runs
    steps = loss_steps_csv(run)
    assert steps == list(range(20))  # metrics.csv: every step once
    client = mlflow.MlflowClient(f"sqlite:///{(run / 'mlflow.db').resolve()}")
    assert [m.step for m in client.get_metric_history(ids_before["mlflow"], "loss")] == steps
    assert len(client.search_runs([client.get_run(ids_before["mlflow"]).info.experiment_id])) == 1
    # W&B: both processes wrote offline folders of the one run id; what the killed one had
    # buffered may be lost, what it wrote is not sent again, the rest is sent by the resumed one
    folders = sorted(p.name for p in (run / "wandb").glob("offline-run-*"))
    assert len(folders) == 2 and all(f.endswith(ids_before["wandb"]) for f in folders)
    run_ids = {r.run.run_id for _, r in wandb_records(run) if r.WhichOneof("record_type") == "run"}
    assert run_ids == {ids_before["wandb"]}  # one W&B run, continued
    sent = [int(h["trainer/global_step"]) for h in wandb_history(run) if "loss" in h]
    assert len(sent) == len(set(sent)) and set(sent) <= set(steps)  # no step twice
    # every step: what the killed process had buffered and lost is sent again from metrics.csv
    assert sorted(sent) == steps


def test_sod_train_logs_to_the_tracker_and_verbose_lets_lightning_speak(tmp_path):
    import logging

    heard: list[str] = []

    class Listen(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            heard.append(record.getMessage())

    listen = Listen()
    logging.getLogger("lightning.pytorch").addHandler(listen)
    over = [
        *SOD_TINY,
        f"output_dir={tmp_path / 'sod'}",
        "run_name=s",
        "log_every_n_steps=1",
        "loggers=[csv,mlflow]",
        "verbose=true",
        "report=false",
    ]
    try:
        assert main(["sod", "train", *over]) == 0
    finally:
        logging.getLogger("lightning.pytorch").removeHandler(listen)
    assert any("litlogger" in m for m in heard)  # verbose=true: Lightning's own lines
    run = tmp_path / "sod" / "train" / "s"
    ids = json.loads((run / "trackers.json").read_text())
    client = mlflow.MlflowClient(f"sqlite:///{(run / 'mlflow.db').resolve()}")
    logged = client.get_run(ids["mlflow"]).data
    assert "train/loss_step" in logged.metrics and logged.params["decoder_dim"] == "8"
    assert logged.tags["best_checkpoint"].endswith("best.ckpt")


def test_a_step_half_written_to_mlflow_by_a_kill_is_completed_not_repeated(tmp_path):
    """MLflow's file store writes each metric of a step to a file of its own, so a kill inside
    one call can leave step 8's ``epoch`` written and its ``loss`` not. The resumed run sends
    each metric from the step after the last one that metric holds (a flaky kill test found
    a step missing when this was asked of ``epoch`` alone)."""
    from lightning.pytorch.loggers import MLFlowLogger

    from solo_rgbd.engine.trackers import _ResumeSafe

    uri = f"file:{(tmp_path / 'mlruns').resolve()}"
    killed = MLFlowLogger(experiment_name="e", tracking_uri=uri)
    for step in range(8):
        killed.log_metrics({"epoch": 0.0, "loss": 1.0 / (step + 1)}, step)
    killed.log_metrics({"epoch": 1.0}, 8)  # the kill: step 8's loss never written
    resumed = _ResumeSafe(
        MLFlowLogger(experiment_name="e", tracking_uri=uri, run_id=killed.run_id),
        {}, tmp_path, resumed=True,
    )  # fmt: skip
    for step in range(6, 12):  # the resumed run redoes the steps after its checkpoint (5)
        resumed.log_metrics({"epoch": 1.0, "loss": 1.0 / (step + 1)}, step)
    client = mlflow.MlflowClient(uri)
    for key in ("epoch", "loss"):
        steps = [m.step for m in client.get_metric_history(killed.run_id, key)]
        assert sorted(steps) == list(range(12)), key  # every step once, none missing


@pytest.mark.slow
def test_a_tracker_added_on_resume_gets_the_config_and_every_step_so_far(tmp_path, capsys):
    """A csv-only run, resumed with MLflow: the MLflow run gets the parameters and the steps
    logged before the resume (from metrics.csv), then the rest; each step once."""
    over = tiny_overrides(tmp_path, **SHORT_MBCF, run_name="t")
    assert main(["pretrain", *over, "method_kwargs.stage2_epochs=0", "trainer.max_epochs=1"]) == 0
    run = tmp_path / "outputs" / "mbcf" / "t"
    before = loss_steps_csv(run)
    assert before and not (run / "trackers.json").exists()
    assert main(["pretrain", *over, "resume=last", "loggers=[csv,mlflow]"]) == 0
    ids = json.loads((run / "trackers.json").read_text())
    client = mlflow.MlflowClient(f"sqlite:///{(run / 'mlflow.db').resolve()}")
    steps = [m.step for m in client.get_metric_history(ids["mlflow"], "loss")]
    assert steps == loss_steps_csv(run) and len(steps) > len(before)
    assert client.get_run(ids["mlflow"]).data.params["backbone.name"] == "test_resnet"
