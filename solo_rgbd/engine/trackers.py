"""Experiment trackers: ``loggers=[csv,tensorboard,wandb,mlflow]`` for every run the engine
trains (pretraining, a task's decoder, every cell of ``compare``).

Each tracker is Lightning's own logger class (``TensorBoardLogger``, ``WandbLogger``,
``MLFlowLogger``); ``csv`` (``logs/metrics.csv``) is always on. A tracker receives, at the same
steps, every row that reaches ``metrics.csv``; as hyperparameters, the composed config
flattened to the keys of ``config.yaml`` (``backbone.name``, ...) and the run folder
(``run_dir``); at the end (:func:`finish_trackers`), what the command adds (the export's
sha256, the report's path).

**Resume is the same tracker run.** The W&B run id and the MLflow run id are kept in
``<run>/trackers.json`` and in the checkpoint (:class:`TrackerRuns`); a resumed run reopens
them. The killed process may already have sent steps after its last checkpoint, which the
resumed one computes again: :class:`_ResumeSafe` asks each tracker for the last step it holds
(MLflow: each metric's history in its store, metric by metric, since a kill inside one call
can leave a step's row half written; W&B offline: the run's earlier offline records; W&B
online: the last step in ``metrics.csv``, which the killed process sent with it) and drops the
steps up to it, so a tracker's history has each step once. What a tracker lost to a kill (W&B
buffers its offline records) stays lost; the steps from the checkpoint on are sent again.

Nothing reaches the network unless asked: ``wandb.mode`` defaults to ``offline`` (``wandb sync
<run>/wandb/offline-run-*`` uploads), and MLflow defaults to a file store in the run folder.
The packages are optional (``pip install 'solo-rgbd[wandb]'``, ``[mlflow]``, ``[trackers]``);
a missing one is an error naming the pip command, before anything is written.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf

from solo_rgbd.engine.tracker_settings import TRACKERS, requested
from solo_rgbd.errors import ConfigError
from solo_rgbd.utils.atomic import atomic_write_text
from solo_rgbd.utils.console import say

IDS = "trackers.json"


def flat_config(cfg: DictConfig) -> dict[str, Any]:
    """The config as ``config.yaml`` holds it, one key per leaf (``data.batch_size``)."""
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            out[prefix.rstrip(".")] = (
                node if isinstance(node, (int, float, str, bool)) else str(node)
            )

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    out.pop("resume", None)  # how the process started, not a setting (as in config.yaml)
    return out


def _ids(value: Any) -> dict[str, str] | None:
    """Tracker run ids as saved ({tracker: id}, ids of letters, digits, ``-`` and ``_``), or
    None: they are data from outside, never used to build a path unchecked."""
    if isinstance(value, dict) and all(
        k in TRACKERS and isinstance(v, str) and re.fullmatch(r"[A-Za-z0-9_-]{1,64}", v)
        for k, v in value.items()
    ):
        return dict(value)
    return None


def _saved_ids(run_dir: Path, ckpt: Path | None) -> dict[str, str]:
    """The tracker run ids of this run: ``trackers.json``, else the resume checkpoint's; a
    damaged file is recovered from the checkpoint (one line says so) or refused by name."""
    from_ckpt = None
    if ckpt is not None and ckpt.is_file():
        state = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
        callbacks = state.get("callbacks") if isinstance(state, dict) else None
        runs = callbacks.get("TrackerRuns") if isinstance(callbacks, dict) else None
        from_ckpt = _ids((runs or {}).get("ids") or {}) if isinstance(runs, dict) else None
    path = run_dir / IDS
    if not path.exists():
        return from_ckpt or {}
    try:
        saved = _ids(json.loads(path.read_text())) if path.is_file() else None
    except (OSError, ValueError):
        saved = None
    if saved is not None:
        return saved
    if from_ckpt is not None:
        say(f"note: {path} is damaged; the tracker run ids come from the checkpoint.", err=True)
        return from_ckpt
    raise ConfigError(
        f"{path} is damaged (it should map each tracker to its run id) and the checkpoint "
        "holds no tracker ids; delete the file to start new tracker runs for this run. "
        "Nothing was written."
    )


def _last_step(run_dir: Path) -> int:
    """The last step in ``metrics.csv`` (sent to the trackers by the process before)."""
    from solo_rgbd.engine.metrics import CSVRows, _step

    steps = [_step(r) for r in CSVRows(run_dir / "logs" / "metrics.csv").rows()]
    return max((s for s in steps if s is not None), default=-1)


def build_trackers(cfg: DictConfig, run_dir: Path, ckpt: Path | None) -> list[Logger]:
    """Lightning loggers for every tracker but csv (constructed lazily: nothing is created or
    contacted before the first log)."""
    names = requested(cfg)
    ids = _saved_ids(run_dir, ckpt) if ckpt is not None else {}
    loggers: list[Logger] = []
    kinds: list[str] = []
    for name in names:
        if name == "tensorboard":
            from lightning.pytorch.loggers import TensorBoardLogger

            loggers.append(TensorBoardLogger(str(run_dir), name="tensorboard", version=""))
        elif name == "wandb":
            loggers.append(_wandb(cfg, run_dir, ids.get("wandb")))
        elif name == "mlflow":
            loggers.append(_mlflow(cfg, run_dir, ids.get("mlflow")))
        else:
            continue
        kinds.append(name)
    params = {**flat_config(cfg), "run_dir": str(run_dir.resolve())}
    # a tracker this run had before reopens its run; one added on resume starts fresh (the
    # config, then every step so far from metrics.csv: TrackerRuns.on_train_start)
    had = {k for k in ids if k in ("wandb", "mlflow")} | ({"tensorboard"} if ckpt else set())
    return [
        _ResumeSafe(lg, params, run_dir, resumed=ckpt is not None and kind in had)
        for lg, kind in zip(loggers, kinds, strict=True)
    ]


def _wandb(cfg: DictConfig, run_dir: Path, run_id: str | None) -> Logger:
    from lightning.pytorch.loggers import WandbLogger

    w = cfg.wandb
    if not cfg.get("verbose"):
        os.environ.setdefault("WANDB_SILENT", "true")
    return WandbLogger(
        name=str(w.name or run_dir.name),
        save_dir=str(run_dir),
        project=str(w.project),
        entity=w.entity,
        group=w.group,
        tags=[str(t) for t in w.tags] or None,
        mode=str(w.mode),
        id=run_id or uuid.uuid4().hex[:12],
        resume="allow",
    )


def _mlflow(cfg: DictConfig, run_dir: Path, run_id: str | None) -> Logger:
    from lightning.pytorch.loggers import MLFlowLogger

    m = cfg.mlflow
    uri = str(m.tracking_uri or default_mlflow_uri(run_dir))
    if uri.startswith("file:"):  # MLflow 3 keeps its file store behind an opt-in
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    if run_id is not None and not _mlflow_run_exists(uri, run_id):
        note = f"note: MLflow run {run_id} of this run is not in {uri} (deleted?); a new "
        say(note + "MLflow run starts, with the steps so far from metrics.csv.", err=True)
        run_id = None
    tags = {"mlflow.parentRunId": str(m.parent_run_id)} if m.parent_run_id else None
    return MLFlowLogger(
        experiment_name=str(m.experiment),
        run_name=str(m.run_name or run_dir.name),
        tracking_uri=uri,
        tags=tags,
        run_id=run_id,
    )


def default_mlflow_uri(folder: Path) -> str:
    """A SQLite store in the run (or grid) folder, which the installed MLflow opens as it is;
    a folder that already has a file store (``mlruns/``, earlier versions) keeps it."""
    if (folder / "mlruns").is_dir():
        return f"file:{(folder / 'mlruns').resolve()}"
    return f"sqlite:///{(folder / 'mlflow.db').resolve()}"


def _mlflow_run_exists(uri: str, run_id: str) -> bool:
    from mlflow import MlflowClient

    try:
        MlflowClient(uri).get_run(run_id)
        return True
    except Exception:  # noqa: BLE001 - MLflow raises its own kinds for a missing store or run
        return False


class _ResumeSafe(Logger):
    """A tracker's logger that sends the config once, and each step once across a resume."""

    def __init__(self, inner: Logger, params: dict, run_dir: Path, resumed: bool) -> None:
        super().__init__()
        self.inner, self.params, self.run_dir = inner, params, run_dir
        self.resumed = resumed
        self.done_through: int | None = None if resumed else -1  # asked at the first log
        #: MLflow, resumed: the last step held per metric (a kill inside one log call can
        #: leave a step's row half written, each metric being a file of its own)
        self.held: dict[str, int] | None = {} if resumed else None

    @property
    def name(self) -> str:
        return str(self.inner.name)

    @property
    def version(self) -> Any:
        return self.inner.version

    @property
    def experiment(self) -> Any:
        return self.inner.experiment

    @property
    def kind(self) -> str:
        return type(self.inner).__name__.removesuffix("Logger").lower()

    def run_id(self) -> str | None:
        if self.kind == "wandb":
            return str(self.inner.version)
        if self.kind == "mlflow":
            return str(self.inner.run_id)
        return None

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        # Lightning hands the module's hparams; the tracker gets config.yaml's keys, once
        if not self.resumed:
            self.inner.log_hyperparams(self.params)
            self.resumed = True

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if self.kind == "mlflow" and self.held is not None and step is not None:
            metrics = {k: v for k, v in metrics.items() if step > self._held_for(k)}
            if metrics:
                self.inner.log_metrics(metrics, step)
            return
        if self.done_through is None:
            self.done_through = self._held_through()
        if step is not None and step <= self.done_through:
            return  # the tracker holds it from the process this run resumed from
        self.inner.log_metrics(metrics, step)

    def _held_for(self, key: str) -> int:
        """The last step of ``key`` this MLflow run already holds (asked once per key)."""
        assert self.held is not None
        if key not in self.held:
            history = self.inner.experiment.get_metric_history(self.inner.run_id, key)
            self.held[key] = max((int(m.step) for m in history), default=-1)
        return self.held[key]

    def _held_through(self) -> int:
        """The last step this tracker run already holds (module doc): W&B's records hold a
        step's row whole or not at all."""
        if self.kind == "wandb" and str(self.inner.experiment.settings.mode) == "offline":
            run_id = str(self.inner.version)
            steps = [
                int(row["trainer/global_step"])
                for row in wandb_offline_history(self.run_dir, run_id)
                if "trainer/global_step" in row
            ]
            return max(steps, default=-1)
        return _last_step(self.run_dir)

    def backfill(self, rows: list[dict[str, Any]]) -> None:
        """Send the rows of ``metrics.csv`` this tracker does not hold (a tracker added on
        resume holds none; one that lost steps to a kill, those): each step once."""
        from solo_rgbd.engine.metrics import _step, to_floats

        for row in rows:
            step = _step(row)
            values = to_floats({k: v for k, v in row.items() if k not in ("step", "epoch")})
            if step is not None and values:
                self.log_metrics(values, step)

    def save(self) -> None:
        self.inner.save()

    def finalize(self, status: str) -> None:
        self.inner.finalize(status)


def wandb_offline_history(run_dir: Path, run_id: str) -> list[dict[str, Any]]:
    """The history rows of a run's W&B offline records under ``run_dir/wandb`` (every
    session's folder; a record cut short by a kill ends the reading of its file). The file is
    LevelDB's log format (32 KiB blocks of CRC'd, typed chunks) holding ``wandb.proto`` records
    after a 7-byte header."""
    from wandb.proto import wandb_internal_pb2 as pb

    rows: list[dict[str, Any]] = []
    for path in sorted(run_dir.glob(f"wandb/offline-run-*-{run_id}/run-{run_id}.wandb")):
        data, pos, buf = path.read_bytes(), 7, b""
        while pos + 7 <= len(data):
            left = 32768 - pos % 32768
            length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
            if left < 7 or (length == 0 and kind == 0):
                pos += left
                continue
            chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
            if kind in (2, 3):  # the first or a middle piece of a record
                buf = chunk if kind == 2 else buf + chunk
                continue
            record = pb.Record()
            try:
                record.ParseFromString(buf + chunk if kind == 4 else chunk)
            except Exception:  # noqa: BLE001 - a record cut short by a kill
                break
            buf = b""
            if record.WhichOneof("record_type") == "history":
                rows.append(
                    {
                        (i.key or "/".join(i.nested_key)): json.loads(i.value_json)
                        for i in record.history.item
                    }
                )
    return rows


class TrackerRuns(pl.Callback):
    """Keeps the tracker run ids in ``trackers.json`` and in the checkpoint (rank 0)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.ids: dict[str, str] = {}

    @property
    def state_key(self) -> str:
        return "TrackerRuns"

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        from solo_rgbd.engine.metrics import CSVRows

        rows = None
        for logger in trainer.loggers:
            if not isinstance(logger, _ResumeSafe):
                continue
            if logger.run_id():
                logger.log_hyperparams({})  # opens the run now (no-op after the first time)
                self.ids[logger.kind] = logger.run_id()
            if rows is None:  # the steps before this session (none in a fresh run)
                rows = CSVRows(self.run_dir / "logs" / "metrics.csv").rows()
            logger.backfill(rows)
        if self.ids:
            atomic_write_text(json.dumps(self.ids, indent=1), self.run_dir / IDS)

    def state_dict(self) -> dict[str, Any]:
        return {"ids": dict(self.ids)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.ids = dict(state_dict.get("ids") or {})


def finish_trackers(trainer: pl.Trainer, extras: dict[str, str], failed: bool = False) -> None:
    """Send ``extras`` (the export's sha256, the report's path) and close each tracker run
    (rank 0; a failed or preempted run closes its W&B run too: a resume reopens it)."""
    if not trainer.is_global_zero:
        return
    for logger in trainer.loggers:
        if not isinstance(logger, _ResumeSafe) or logger.kind not in ("wandb", "mlflow"):
            continue
        if logger.kind == "wandb":
            run = logger.experiment
            run.summary.update(extras)
            folder = Path(run.dir).parent
            offline = str(run.settings.mode) == "offline"
            run.finish(exit_code=1 if failed else 0)
            if offline and not failed:
                say(f"wandb: offline run in {folder}; upload it with: wandb sync {folder}")
        else:
            for key, value in extras.items():
                logger.experiment.set_tag(logger.inner.run_id, key, value)
