"""A compare grid's runs in the trackers (issue 34): named <grid>/<row>/seed<k>, grouped (W&B
group = the grid; MLflow: children of the grid's parent run, in one store)."""

from __future__ import annotations

import json
import os

import pytest

from solo_rgbd.commands.pretrain import run_pretrain
from solo_rgbd.compare.runner import compose_experiment, pretrain_overrides
from solo_rgbd.compare.tracking import open_grid, tracker_overrides
from solo_rgbd.config import compose
from tests.conftest import SHORT_MBCF, tiny_overrides

mlflow = pytest.importorskip("mlflow")
pytest.importorskip("wandb")
os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")


def test_a_grid_logs_to_csv_only_unless_asked():
    cfg = compose_experiment(["experiment=quick"])
    assert tracker_overrides(cfg, "MBCF", 0) == []


def test_a_grids_cells_are_named_and_grouped_in_wandb_and_mlflow(tmp_path, capsys):
    cfg = compose_experiment(
        ["experiment=quick", f"out={tmp_path / 'grid'}", "loggers=[csv,wandb,mlflow]"]
    )
    open_grid(cfg)
    parent = cfg.mlflow.parent_run_id
    open_grid(cfg)  # a rerun of the grid keeps its parent run
    assert cfg.mlflow.parent_run_id == parent
    row = {"name": "MBCF (one-stage)", "method": "mbcf", "overrides": []}
    over = pretrain_overrides(cfg, row, 1, tmp_path / "cell")
    assert "wandb.name='quick/MBCF (one-stage)/seed1'" in over and "wandb.group='quick'" in over
    task = tracker_overrides(cfg, row["name"], 1, "sod")
    assert compose("sod", task).mlflow.run_name == "quick/MBCF (one-stage)/seed1/sod"
    # one tiny pretraining run with the cell's tracker settings
    tiny = tiny_overrides(tmp_path, **SHORT_MBCF, run_name="cell")
    run = run_pretrain(compose("pretrain", [*tiny, *tracker_overrides(cfg, "MBCF", 0)]))
    printed = capsys.readouterr()
    assert "litlogger" not in printed.out + printed.err  # in-process runs are quiet too
    assert "Creating it" not in printed.out + printed.err
    ids = json.loads((run / "trackers.json").read_text())
    client = mlflow.MlflowClient(f"file:{(tmp_path / 'grid' / 'mlruns').resolve()}")
    child = client.get_run(ids["mlflow"])
    assert child.info.run_name == "quick/MBCF/seed0"
    assert child.data.tags["mlflow.parentRunId"] == parent  # the grid is one group
    assert client.get_run(parent).info.run_name == "quick"
    from tests.engine.test_trackers import wandb_records

    record = next(r.run for _, r in wandb_records(run) if r.WhichOneof("record_type") == "run")
    assert record.run_group == "quick" and record.display_name == "quick/MBCF/seed0"
