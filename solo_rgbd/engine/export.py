"""The encoder export of a pretraining run (rank 0, before the checkpoint of the same epoch);
the files and their guarantees are in :mod:`solo_rgbd.nn.encoder_io`.

Exports follow the checkpoint's rhythm: an epoch's end exports when it writes a checkpoint
(:meth:`~solo_rgbd.engine.checkpoint.RunCheckpoint.due_at_epoch_end`), and so does the run's
end. The loop pays for a host copy of the encoders' weights; with a background writer
(:mod:`solo_rgbd.engine.async_io`) the export itself (the finiteness check, serialising,
hashing, writing, the folder swap) runs on the checkpoint's thread before the checkpoint, so a
checkpoint on disk always has its export on disk.

With ``snapshot_every`` N > 0 the encoders of every N-th epoch are also kept, each as its own
export in ``snapshots/epochNNN/`` (NNN: epochs done), for curves of a downstream score against
pretraining steps (``bench/probe_curve.py``). A snapshot is a function of the epoch alone, so a
resumed run writes the same folders.
"""

from __future__ import annotations

import os
from pathlib import Path

import lightning.pytorch as pl

from solo_rgbd.engine.async_io import AsyncAtomicCheckpointIO
from solo_rgbd.engine.checkpoint import RunCheckpoint
from solo_rgbd.nn.encoder_io import snapshot_encoders, write_export


class EncoderExport(pl.Callback):
    """Export the encoders when the run checkpoints at an epoch's end and at its end (rank 0),
    before the checkpoint; keep every ``snapshot_every``-th epoch's encoders."""

    def __init__(
        self,
        out_dir: str | os.PathLike[str],
        snapshot_every: int = 0,
        snapshot_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.snapshot_every = int(snapshot_every)
        self.snapshot_dir = Path(snapshot_dir or self.out_dir.parent / "snapshots")
        self.exported_step: int | None = None

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        policy = next((c for c in trainer.callbacks if isinstance(c, RunCheckpoint)), None)
        folders = [self.out_dir] if policy is None or policy.due_at_epoch_end(trainer) else []
        done = trainer.current_epoch + 1
        if self.snapshot_every > 0 and done % self.snapshot_every == 0:
            folders.append(self.snapshot_dir / f"epoch{done:03d}")
        self.export(trainer, pl_module, folders)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.exported_step != trainer.global_step:  # a run that ended before its last epoch
            self.export(trainer, pl_module, [self.out_dir])

    def export(self, trainer: pl.Trainer, pl_module: pl.LightningModule, folders: list) -> None:
        if not trainer.is_global_zero or not folders:
            return
        snapshot = snapshot_encoders(pl_module.export_encoders())
        info = {
            "method": pl_module.method_name,
            "epoch": trainer.current_epoch,
            "global_step": trainer.global_step,
        }
        if self.out_dir in folders:
            self.exported_step = trainer.global_step

        def write() -> None:
            for folder in folders:
                write_export(snapshot, folder, info)

        writer = getattr(trainer.strategy, "checkpoint_io", None)
        if isinstance(writer, AsyncAtomicCheckpointIO):  # on the thread, before the checkpoint
            writer.submit(write)
        else:
            write()
