"""Encoder exports: ``encoders/{rgb,depth}.pt`` + ``encoders.json``, written as one verified unit.

An export is built in a temporary sibling folder (state dicts first, the manifest with their
sha256 last, every file fsynced), then swapped in by two renames: the old folder aside, the new
one into place. :func:`resolve_export_dir` completes a swap that a kill interrupted, so a reader
always finds one complete export of one epoch. The state dicts are saved through a file object,
so identical weights give identical bytes (and sha256). NaN weights are never exported.
:func:`verify_export` checks every hash on load.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from solo_rgbd.errors import CheckpointError, NonFiniteError
from solo_rgbd.nn.backbone import export_state_dict
from solo_rgbd.utils.atomic import fsync_dir, fsync_file, torch_save_bytes

MANIFEST = "encoders.json"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _siblings(out_dir: Path, kind: str) -> list[Path]:
    return sorted(out_dir.parent.glob(f".{out_dir.name}.*.{kind}"))


def resolve_export_dir(out_dir: str | os.PathLike[str]) -> Path:
    """Finish an interrupted swap and clean leftovers; returns ``out_dir``."""
    out_dir = Path(out_dir)
    complete = [p for p in _siblings(out_dir, "partial") if (p / MANIFEST).is_file()]
    if not (out_dir / MANIFEST).is_file():
        backups = [p for p in _siblings(out_dir, "old") if (p / MANIFEST).is_file()]
        newest = (complete or backups or [None])[-1]
        if newest is not None:
            if out_dir.exists():
                shutil.rmtree(out_dir)
            os.replace(newest, out_dir)
            fsync_dir(out_dir.parent)
    for leftover in _siblings(out_dir, "partial") + _siblings(out_dir, "old"):
        shutil.rmtree(leftover, ignore_errors=True)
    return out_dir


def export_encoders(
    encoders: dict[str, Any], out_dir: str | os.PathLike[str], info: dict[str, Any]
) -> dict[str, Any]:
    """Write ``encoders`` ({name: Encoder}) as timm-loadable state dicts plus the manifest.

    Each ``<name>.pt`` loads with ``timm.create_model(backbone, in_chans=..., num_classes=0)``.
    """
    out_dir = Path(out_dir)
    states = {name: export_state_dict(enc) for name, enc in encoders.items()}
    if not all(
        torch.isfinite(v).all()
        for s in states.values()
        for v in s.values()
        if v.is_floating_point()
    ):
        raise NonFiniteError(
            f"refusing to export non-finite encoder weights to '{out_dir}' (step "
            f"{info.get('global_step')}); the previous export is kept."
        )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    resolve_export_dir(out_dir)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    try:
        manifest: dict[str, Any] = {**info, "encoders": {}}
        for name, encoder in encoders.items():
            path = tmp / f"{name}.pt"
            torch_save_bytes(states[name], path)
            fsync_file(path)
            manifest["encoders"][name] = {
                "file": path.name,
                "backbone": encoder.name,
                "in_chans": encoder.in_chans,
                "sha256": sha256_of(path),
            }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        fsync_file(tmp / MANIFEST)
        fsync_dir(tmp)
        old = None
        if out_dir.exists():
            old = out_dir.parent / f".{out_dir.name}.{os.getpid()}.old"
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        fsync_dir(out_dir.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def verify_export(folder: Path) -> dict[str, Any]:
    """The manifest of ``folder`` after checking that every listed file has its sha256."""
    folder = resolve_export_dir(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            f"'{folder / MANIFEST}' cannot be read ({exc}); export the encoders again."
        ) from None
    for name, entry in (manifest.get("encoders") or {}).items():
        path = folder / str(entry.get("file", ""))
        if not path.is_file():
            raise CheckpointError(f"'{path}' listed for encoder '{name}' in {MANIFEST} is missing.")
        if entry.get("sha256") and sha256_of(path) != entry["sha256"]:
            raise CheckpointError(
                f"'{path}' does not match the sha256 in '{folder / MANIFEST}': the file was "
                "changed or comes from another export (e.g. another epoch). Re-export the "
                "encoders (or copy the whole encoders/ folder of one run)."
            )
    return manifest


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
