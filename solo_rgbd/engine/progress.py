"""The progress bar of every run: Lightning's tqdm bar, fed floats the engine already read.

Lightning shows the values a module logs with ``self.log(..., prog_bar=True)``, and converts
them to Python numbers on *every* step, a host sync per value per step on a GPU, even on steps
that logged nothing. A method's scalars instead reach the bar through
:class:`~solo_rgbd.engine.metrics.MetricsWriter`: on logging steps it reads the row once (for
``metrics.csv``) and hands the method's ``progress_keys`` to :meth:`RunProgressBar.show`; the
bar shows those floats until the next logging step. Nothing is read between logging steps.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import TQDMProgressBar


class RunProgressBar(TQDMProgressBar):
    """Lightning's bar plus the last values handed to :meth:`show`."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, float] = {}

    def show(self, values: dict[str, float]) -> None:
        self.values.update(values)

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        """The method's values (whole numbers, like ``stage``, shown as such), without
        Lightning's ``v_num`` (the logger's version: not a number of this run)."""
        items = {**super().get_metrics(trainer, pl_module), **self.values}
        items.pop("v_num", None)
        return {
            k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in items.items()
        }
