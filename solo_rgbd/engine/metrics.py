"""The per-step rows a method logs, and the CSV file they land in.

Methods and probes log their per-step scalars with Lightning's ``self.log`` / ``self.log_dict``,
which a method (:meth:`BaseMethod.log <solo_rgbd.methods.base.BaseMethod.log>`) keeps in a row
of device tensors (no host sync); :class:`MetricsWriter` turns the row into floats once (one
sync, on logging steps only) and hands it to every logger at ``on_train_batch_end`` /
``on_train_epoch_end``, i.e. *before* :class:`~solo_rgbd.engine.checkpoint.RunCheckpoint`
writes the checkpoint of that step. :class:`~solo_rgbd.engine.csv_logger.RunCSVLogger` writes
them to ``logs/metrics.csv`` (with whatever else Lightning's ``self.log`` logs); other Lightning
loggers (TensorBoard) receive the same rows. The module's ``progress_keys`` among them go to
the progress bar (:class:`~solo_rgbd.engine.progress.RunProgressBar`), so the bar reads nothing
between logging steps either.

:class:`CSVRows` is that file: append-only, and on resume only the rows logged after the
checkpoint are dropped (the resumed run logs those steps again, with the same values).
"""

from __future__ import annotations

import csv
import os
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from solo_rgbd.engine.contract import EncoderModule
from solo_rgbd.utils.atomic import atomic_path

FIXED = ("epoch", "step")


class CSVRows:
    """An append-only CSV whose header grows (sorted) when a new key appears."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.keys: list[str] = self._read_header()

    def _read_header(self) -> list[str]:
        if not self.path.is_file():
            return []
        with open(self.path, newline="") as f:
            return next(csv.reader(f), [])

    def rows(self) -> list[dict[str, str]]:
        if not self.path.is_file():
            return []
        with open(self.path, newline="") as f:
            return list(csv.DictReader(f))

    def _rewrite(self, rows: list[dict[str, Any]], keys: list[str]) -> None:
        with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)
        self.keys = keys

    def append(self, row: dict[str, Any]) -> None:
        new = set(row) - set(self.keys)
        if new or not self.path.is_file():
            rest = sorted((set(self.keys) | set(row)) - set(FIXED))
            self._rewrite(self.rows(), [*FIXED, *rest])
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.keys).writerow(row)

    def drop_from_step(self, step: int) -> int:
        """Remove rows with ``step >= step``; returns how many were dropped."""
        rows = self.rows()
        # a row cut short by a kill (too few or too many fields, a step that is no number)
        # cannot be redone from the checkpoint's step: it is dropped, with a warning
        readable = [
            r for r in rows if None not in r and None not in r.values() and _step(r) is not None
        ]
        keep = [r for r in readable if _step(r) < step]
        if len(readable) != len(rows):
            warnings.warn(
                f"{self.path}: dropped {len(rows) - len(readable)} unreadable row(s) (a write cut "
                "short by a kill, or an edit); the other rows are kept.",
                stacklevel=2,
            )
        if len(keep) != len(rows):
            self._rewrite(keep, self.keys)
        return len(rows) - len(keep)


def _step(row: dict[str, Any]) -> int | None:
    """The row's step (-1 for a row without one: kept on resume), or None if unreadable."""
    raw = row.get("step")
    if raw == "":
        return -1
    try:
        return int(float(raw))
    except (TypeError, ValueError, OverflowError):
        return None


def to_floats(values: dict[str, Any]) -> dict[str, float]:
    """Tensors and numbers -> floats, with a single device-to-host copy for all tensors."""
    tensors = {k: v for k, v in values.items() if isinstance(v, torch.Tensor)}
    out = {k: float(v) for k, v in values.items() if k not in tensors}
    if tensors:
        stacked = torch.stack([v.detach().float().reshape(()) for v in tensors.values()])
        out.update(zip(tensors, stacked.cpu().tolist(), strict=True))
    return out


class MetricsWriter(pl.Callback):
    """Hands a method's rows (what it logged per step with ``self.log``) to the loggers (rank 0),
    and rewinds the loggers that can (:class:`RunCSVLogger`) to the step a run starts at."""

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # rows past the starting point (resumed, or resume=auto restarting epoch 0) are redone
        for logger in trainer.loggers:
            if hasattr(logger, "rewind"):
                logger.rewind(trainer.global_step)

    def _flush(self, trainer: pl.Trainer, pl_module: pl.LightningModule, step: int) -> None:
        # a pretraining method's own rows; any other module logs through self.log alone
        row = pl_module.pop_log_row() if isinstance(pl_module, EncoderModule) else {}
        if not row or not trainer.is_global_zero:
            return
        values = to_floats(row)
        for logger in trainer.loggers:
            logger.log_metrics({"epoch": trainer.current_epoch, **values}, step=step)
        bar = trainer.progress_bar_callback
        if hasattr(bar, "show"):  # the floats just read, shown until the next logging step
            keys = pl_module.progress_keys
            bar.show({k: v for k, v in values.items() if k in keys})

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # the step just finished: global_step counts it already
        self._flush(trainer, pl_module, max(0, trainer.global_step - 1))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._flush(trainer, pl_module, max(0, trainer.global_step - 1))
