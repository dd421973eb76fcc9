"""Loading files a user hands in: ``torch.load(weights_only=True)``, never code."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import torch

from solo_rgbd.errors import CheckpointError


def load_user_checkpoint(path: str | os.PathLike[str], what: str) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` with one-paragraph errors for corrupt or foreign files."""
    path = Path(path)
    _check_expansion(path, what)
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


def _check_expansion(path: Path, what: str) -> None:
    """``torch.save`` stores its zip entries uncompressed, so what a checkpoint unpacks to is
    about its size on disk. A crafted file whose compressed entries unpack to many times more
    (a zip bomb: 0.26 MB that became 268 MB) is refused before anything is unpacked."""
    try:
        if not zipfile.is_zipfile(path):
            return  # the legacy format, or not a checkpoint at all: torch.load says which
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (OSError, zipfile.BadZipFile, ValueError):
        return  # torch.load gives the one-paragraph error
    on_disk = path.stat().st_size
    if unpacked > 4 * on_disk + (64 << 20):
        raise CheckpointError(
            f"{what} '{path}' would unpack to {unpacked / 1e6:.0f} MB from {on_disk / 1e6:.2f} "
            "MB on disk; checkpoints written by torch.save are not compressed, so this file "
            "was crafted or damaged. It is not loaded. Use an intact checkpoint."
        )


def read_json_file(path: Path, what: str, fix: str, limit: int = 64 << 20) -> Any:
    """The JSON in ``path``, read only as a regular file of at most ``limit`` bytes (a FIFO
    would block the read, a huge file fill the memory); anything else is a :class:`DataError`
    naming the file, ``what`` it should hold and the ``fix``."""
    import json
    import os
    import stat

    from solo_rgbd.errors import DataError

    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("not a regular file")
        if st.st_size > limit:
            raise ValueError(f"{st.st_size} bytes, more than {what} can be")
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError included
        raise DataError(f"'{path}' is not {what} ({exc}); {fix}.") from None
