"""Loading files a user hands in: ``torch.load(weights_only=True)``, never code."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from solo_rgbd.errors import CheckpointError


def load_user_checkpoint(path: str | os.PathLike[str], what: str) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` with one-paragraph errors for corrupt or foreign files."""
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, random bytes, pickled code...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if first.startswith("Weights only load failed"):
            first = "not a file of plain tensors and containers"
        raise CheckpointError(
            f"{what} '{path}' cannot be read as a safe PyTorch checkpoint ({first[:200]}). It "
            "is truncated, corrupt, or holds arbitrary Python objects (only weights are loaded, "
            "never code). Use an intact checkpoint, e.g. the run's checkpoints/last.ckpt."
        ) from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{what} '{path}' holds a {type(ckpt).__name__}, not a checkpoint.")
    return ckpt
