"""Write the encoders and checkpoints so that nothing is ever half-written."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from solo_rgbd.nn.backbone import export_state_dict
from solo_rgbd.utils.atomic import atomic_path, atomic_torch_save, atomic_write_text


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoints written to a temporary file and renamed into place."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def export_encoders(method: Any, out_dir: Path, extra: dict[str, Any] | None = None) -> dict:
    """Save ``method.export_encoders()`` as timm-loadable state dicts plus ``encoders.json``.

    Each ``<name>.pt`` loads with::

        m = timm.create_model(backbone, in_chans=in_chans, num_classes=0)
        m.load_state_dict(torch.load(path))
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {"method": method.method_name, "encoders": {}, **(extra or {})}
    for name, encoder in method.export_encoders().items():
        path = out_dir / f"{name}.pt"
        atomic_torch_save(export_state_dict(encoder), path)
        manifest["encoders"][name] = {
            "file": path.name,
            "backbone": encoder.name,
            "in_chans": encoder.in_chans,
            "sha256": sha256_of(path),
        }
    atomic_write_text(json.dumps(manifest, indent=2), out_dir / "encoders.json")
    return manifest


class EncoderExport(pl.Callback):
    """Export the encoders at the end of every training epoch and of training."""

    def __init__(self, out_dir: str | Path) -> None:
        self.out_dir = Path(out_dir)

    def _export(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            export_encoders(
                pl_module,
                self.out_dir,
                {"epoch": trainer.current_epoch, "global_step": trainer.global_step},
            )

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._export(trainer, pl_module)
