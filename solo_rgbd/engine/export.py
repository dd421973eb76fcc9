"""The per-epoch encoder export of a pretraining run (rank 0, before the epoch's checkpoint);
the files and their guarantees are in :mod:`solo_rgbd.nn.encoder_io`.

The loop pays for a host copy of the encoders' weights; the export itself (the finiteness
check, serialising, hashing, writing, the folder swap) is queued on the checkpoint's writer
thread when checkpoints are written in the background (:mod:`solo_rgbd.engine.async_io`),
ahead of the epoch's checkpoint, so a checkpoint on disk always has its export on disk. On CPU
(``stage_here``) the loop writes the state dicts and the thread hashes them (while the loop
serialises the checkpoint), writes the manifest, fsyncs and swaps the folder in. The bytes
are those of a synchronous export.

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
from solo_rgbd.nn.encoder_io import (
    discard_spare_folder,
    snapshot_encoders,
    stage_export,
    write_export,
)
from solo_rgbd.utils.atomic import StagedAll


class EncoderExport(pl.Callback):
    """Export the encoders at the end of every training epoch (rank 0), before the checkpoint."""

    def __init__(
        self,
        out_dir: str | os.PathLike[str],
        snapshot_every: int = 0,
        snapshot_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.snapshot_every = int(snapshot_every)
        self.snapshot_dir = Path(snapshot_dir or self.out_dir.parent / "snapshots")

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        snapshot = snapshot_encoders(pl_module.export_encoders())
        info = {
            "method": pl_module.method_name,
            "epoch": trainer.current_epoch,
            "global_step": trainer.global_step,
        }
        folders = [self.out_dir]
        done = trainer.current_epoch + 1
        if self.snapshot_every > 0 and done % self.snapshot_every == 0:
            folders.append(self.snapshot_dir / f"epoch{done:03d}")

        def write() -> None:
            for folder in folders:
                write_export(snapshot, folder, info)

        def stage() -> StagedAll:
            return StagedAll([stage_export(snapshot, folder, info) for folder in folders])

        writer = getattr(trainer.strategy, "checkpoint_io", None)
        if not isinstance(writer, AsyncAtomicCheckpointIO):
            write()
        elif writer.stage_here:  # written here; hashed, fsynced and swapped in by the thread
            writer.submit_staged("export", stage)
        else:  # all of it on the thread, in order, before the epoch's checkpoint
            writer.submit("export", write)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # after the strategy's teardown, which waited for the writes in flight
        if trainer.is_global_zero:
            discard_spare_folder(self.out_dir)
