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
    client = mlflow.MlflowClient(f"sqlite:///{(tmp_path / 'grid' / 'mlflow.db').resolve()}")
    child = client.get_run(ids["mlflow"])
    assert child.info.run_name == "quick/MBCF/seed0"
    assert child.data.tags["mlflow.parentRunId"] == parent  # the grid is one group
    assert client.get_run(parent).info.run_name == "quick"
    from tests.engine.test_trackers import wandb_records

    record = next(r.run for _, r in wandb_records(run) if r.WhichOneof("record_type") == "run")
    assert record.run_group == "quick" and record.display_name == "quick/MBCF/seed0"


def test_every_registered_task_takes_the_keys_compare_sets():
    """Issue 33: the keys compare writes into a task's config are declared once, in
    TaskConfig, which every task's schema extends."""
    from solo_rgbd.schema import TaskConfig
    from solo_rgbd.tasks.registry import registered_tasks, task_spec
    from solo_rgbd.tasks.sod.config import SODConfig

    assert issubclass(SODConfig, TaskConfig)
    compare_sets = [
        "encoders=random",
        "freeze=false",
        "label_fraction=0.5",
        "ckpt=somewhere",
        "out=elsewhere",
        "output_dir=outputs/x",
        "run_name=run",
        "seed=3",
        "backbone.weights=w.pth",
        "missing_stream=random",
        "loggers=[csv,mlflow]",
        "mlflow.run_name='g/r/seed3'",
    ]
    for name in registered_tasks():
        cfg = compose(task_spec(name).config_name, compare_sets)
        assert cfg.seed == 3 and cfg.label_fraction == 0.5 and cfg.mlflow.run_name == "g/r/seed3"
