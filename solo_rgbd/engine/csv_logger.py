"""``logs/metrics.csv``: a Lightning :class:`~lightning.pytorch.loggers.Logger` that survives
kills and resumes.

Everything a run logs lands here: ``self.log(...)`` of any module (Lightning's logger
connector calls :meth:`RunCSVLogger.log_metrics`) and the rows of the engine's
:class:`~solo_rgbd.engine.metrics.MetricsWriter`. Each call appends one row (``epoch``,
``step``, the values) and the header grows, sorted, when a new key appears.

A resumed run never deletes the file: :meth:`RunCSVLogger.rewind` drops only the rows of the
steps after the checkpoint it resumes from (the resumed run logs those steps again, with the
same values), and the run appends. Lightning logs a step's ``self.log`` values, and an epoch's
``on_epoch`` means, just *after* the callbacks of that step or epoch, so after the checkpoint
of that step; they carry a step before the resumed one and are kept. A preemption signal exits
after them (:class:`~solo_rgbd.engine.checkpoint.RunCheckpoint`); a SIGKILL in the instant
between a checkpoint's rename and those rows' append loses them.
"""

from __future__ import annotations

import os
from argparse import Namespace
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only

from solo_rgbd.engine.metrics import CSVRows


class RunCSVLogger(Logger):
    """Appends every logged row to ``path`` at once (rank 0); :meth:`rewind` on resume."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__()
        self.csv = CSVRows(path)

    @property
    def name(self) -> str:
        return "metrics"

    @property
    def version(self) -> str:
        return ""

    @property
    def log_dir(self) -> str:
        return str(self.csv.path.parent)

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any, **kw: Any) -> None:
        """The run's settings live in ``config.yaml``, not in the metrics."""

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        values = {k: float(v) for k, v in metrics.items() if k not in ("epoch", "step")}
        if not values:
            return
        epoch = metrics.get("epoch", "")
        row = {"epoch": int(epoch) if epoch != "" else "", "step": "" if step is None else step}
        self.csv.append({**row, **values})

    @rank_zero_only
    def rewind(self, step: int) -> int:
        """Drop the rows a run resumed after ``step`` optimizer steps logs again (``step >=``
        that); returns how many."""
        return self.csv.drop_from_step(step)

    def save(self) -> None:
        """Rows are on disk as soon as they are logged."""

    @property
    def path(self) -> Path:
        return self.csv.path
