"""The per-epoch encoder export of a pretraining run (rank 0, before the epoch's checkpoint);
the files and their guarantees are in :mod:`solo_rgbd.nn.encoder_io`."""

from __future__ import annotations

import os
from pathlib import Path

import lightning.pytorch as pl

from solo_rgbd.nn.encoder_io import export_encoders


class EncoderExport(pl.Callback):
    """Export the encoders at the end of every training epoch (rank 0), before the checkpoint."""

    def __init__(self, out_dir: str | os.PathLike[str]) -> None:
        self.out_dir = Path(out_dir)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            export_encoders(
                pl_module.export_encoders(),
                self.out_dir,
                {
                    "method": pl_module.method_name,
                    "epoch": trainer.current_epoch,
                    "global_step": trainer.global_step,
                },
            )
