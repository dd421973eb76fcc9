"""A method's per-step logging: Lightning's ``self.log``, kept off the host between logging
steps.

A method logs with ``self.log`` / ``self.log_dict`` like any LightningModule. A value logged per
step while training goes into this step's row (device tensors as they are); the engine's
:class:`~solo_rgbd.engine.metrics.MetricsWriter` reads the row once on logging steps (every
``log_every_n_steps``) and hands it to the run's loggers, so a step that logs nothing reads
nothing to the host. The subclass sets ``_log_row``, ``_log_now`` and ``progress_keys`` in its
``__init__`` (:class:`~solo_rgbd.methods.base.BaseMethod` does).
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl


class StepLogging(pl.LightningModule):
    _log_row: dict[str, Any]
    _log_now: bool
    progress_keys: set[str]

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        every = max(1, int(self.trainer.log_every_n_steps))
        self._log_now = (self.global_step + 1) % every == 0

    def should_log(self) -> bool:
        """True on the steps whose metrics are written (every ``log_every_n_steps`` steps).

        Diagnostics are computed (and read to the host) on those steps only.
        """
        return self._log_now

    def log(
        self,
        name: str,
        value: Any,
        prog_bar: bool = False,
        logger: bool | None = None,
        on_step: bool | None = None,
        on_epoch: bool | None = None,
        **kwargs: Any,
    ) -> None:
        """Lightning's ``self.log`` (and so ``self.log_dict``), with one difference: a value
        logged per step while training goes into this step's metrics row, which the engine's
        MetricsWriter writes to the same loggers on logging steps and shows on the bar
        (``prog_bar``) without reading a tensor to the host in between. An ``on_epoch``
        aggregate, a synced value, ``logger=False`` or anything logged outside training is
        Lightning's own."""
        trainer = self._attached_trainer()
        per_step = on_step is not False and not on_epoch and logger is not False
        if per_step and not kwargs.get("sync_dist") and (trainer is None or trainer.training):
            self._log_row[name] = value
            if prog_bar:
                self.progress_keys.add(name)
            return
        super().log(name, value, prog_bar, logger, on_step, on_epoch, **kwargs)

    def _attached_trainer(self) -> pl.Trainer | None:
        try:
            return self.trainer
        except RuntimeError:  # not attached (a method driven by hand, as in tests)
            return None

    def pop_log_row(self) -> dict[str, Any]:
        row, self._log_row = self._log_row, {}
        return row
