"""A grid's runs in the user's experiment tracker (``compare ... loggers=[csv,wandb]``).

Every run of a cell (the pretraining, the task's training) gets the grid's tracker settings,
named ``<grid>/<row>/seed<k>`` (the task's run: ``.../<task>``) and grouped: W&B ``group`` is
the grid's name; in MLflow the grid is a parent run (created once, its id kept in
``<out>/trackers.json``) and every run of the grid is its child, in one store
(``<out>/mlruns`` unless ``mlflow.tracking_uri`` names another).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from omegaconf import DictConfig, open_dict

from solo_rgbd.utils.atomic import atomic_write_text

PARENT = "trackers.json"


def _quoted(value: object) -> str:
    return "'" + str(value).replace("'", "").replace("\\", "/") + "'"


def _names(cfg: DictConfig) -> list[str]:
    return [str(n) for n in (cfg.get("loggers") or ["csv"])]


def grid_store(cfg: DictConfig) -> str:
    m = cfg.get("mlflow") or {}
    out = Path(str(cfg.out))
    if m.get("tracking_uri"):
        return str(m.get("tracking_uri"))
    if (out / "mlruns").is_dir():  # a grid of an earlier version keeps its file store
        return f"file:{(out / 'mlruns').resolve()}"
    return f"sqlite:///{(out / 'mlflow.db').resolve()}"


def open_grid(cfg: DictConfig) -> None:
    """The grid's MLflow parent run (once per grid folder), set as ``cfg.mlflow.parent_run_id``
    for every cell; nothing to do without mlflow in ``loggers``."""
    if "mlflow" not in _names(cfg):
        return
    import mlflow

    out = Path(str(cfg.out))
    path = out / PARENT
    saved = json.loads(path.read_text()) if path.is_file() else {}
    uri = grid_store(cfg)
    if uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    parent = saved.get("mlflow_parent")
    if not parent:
        client = mlflow.MlflowClient(uri)
        name = str((cfg.get("mlflow") or {}).get("experiment") or "solo-rgbd")
        found = client.get_experiment_by_name(name)
        experiment = found.experiment_id if found else client.create_experiment(name)
        parent = client.create_run(experiment, run_name=str(cfg.name)).info.run_id
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(json.dumps({**saved, "mlflow_parent": parent}), path)
    with open_dict(cfg):
        cfg.mlflow.parent_run_id = parent


def tracker_overrides(cfg: DictConfig, row: str, seed: int, phase: str = "") -> list[str]:
    """The tracker settings of one run of a cell (none when the grid logs to csv only)."""
    names = _names(cfg)
    if names == ["csv"]:
        return []
    run = "/".join([str(cfg.name), row, f"seed{seed}", *([phase] if phase else [])])
    over = [f"loggers=[{','.join(names)}]"]
    if "wandb" in names:
        w = cfg.get("wandb") or {}
        over += [
            f"wandb.project={_quoted(w.get('project') or 'solo-rgbd')}",
            f"wandb.mode={w.get('mode') or 'offline'}",
            f"wandb.group={_quoted(cfg.name)}",
            f"wandb.name={_quoted(run)}",
            f"wandb.tags=[{','.join(_quoted(t) for t in (w.get('tags') or []))}]",
        ]
        if w.get("entity"):
            over.append(f"wandb.entity={_quoted(w.get('entity'))}")
    if "mlflow" in names:
        m = cfg.get("mlflow") or {}
        over += [
            f"mlflow.tracking_uri={_quoted(grid_store(cfg))}",
            f"mlflow.experiment={_quoted(m.get('experiment') or 'solo-rgbd')}",
            f"mlflow.run_name={_quoted(run)}",
        ]
        if m.get("parent_run_id"):
            over.append(f"mlflow.parent_run_id={m.get('parent_run_id')}")
    return over
