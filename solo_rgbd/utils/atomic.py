"""Atomic, durable file writes: a reader never sees a half-written checkpoint, export or dataset.

Every writer builds the new content under a temporary name in the same folder, flushes it to
disk (``fsync``), renames it into place (``os.replace``, atomic on POSIX and Windows) and syncs
the folder so the rename itself survives a crash. On an exception the temporary is removed.
Each save is a new file: a reader that holds the previous version open (an ``mmap``) keeps
seeing its bytes. Temporaries are created with ``O_EXCL`` and mode 0666, so the kernel applies
the process's umask, as it does for a plain ``open``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a rename or creation inside ``path`` durable (no-op where folders can't be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _temp_name(path: Path, suffix: str) -> Path:
    return path.parent / f".{path.name}.{secrets.token_hex(4)}{suffix}"


def temp_file(path: Path, suffix: str = ".tmp") -> Path:
    """A new empty file beside ``path`` (``.<name>.<random>.tmp``) with the umask's mode."""
    while True:
        tmp = _temp_name(path, suffix)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp


def temp_dir(path: Path, suffix: str = ".partial") -> Path:
    """A new empty folder beside ``path`` (``.<name>.<random>.partial``) with the umask's mode."""
    while True:
        tmp = _temp_name(path, suffix)
        try:
            os.mkdir(tmp, 0o777)
        except FileExistsError:
            continue
        return tmp


def remove_leftovers(path: Path) -> int:
    """Delete the temporaries of ``path`` (``.<name>.*.tmp`` files and ``.<name>.*.partial``
    folders) that a killed writer left beside it; the caller must own ``path`` (hold its lock).
    Returns how many were removed."""
    found = [*path.parent.glob(f".{path.name}.*.tmp"), *path.parent.glob(f".{path.name}.*.partial")]
    for leftover in found:
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)
    return len(found)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is fsynced and renamed onto it.

    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_file(path)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(data: bytes, path: str | os.PathLike[str]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(text: str, path: str | os.PathLike[str]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` to a temporary file, renamed into place. Saved through a file object, so
    the archive's inner name is always 'archive' and the bytes depend on ``obj`` alone."""
    import torch

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        try:
            torch.save(obj, f)
        except RuntimeError as exc:  # torch's zip writer reports a failed write this way
            raise _write_failed(Path(path), exc) from None


def _write_failed(path: Path, exc: RuntimeError) -> OSError:
    """torch.save's RuntimeError as the OSError it stands for: ENOSPC when the disk is full,
    EFBIG when the process has a file size limit (``ulimit -f``), else EIO."""
    import errno

    try:
        full = shutil.disk_usage(path.parent).free < (64 << 20)
    except OSError:
        full = False
    try:
        import resource

        limited = resource.getrlimit(resource.RLIMIT_FSIZE)[0] != resource.RLIM_INFINITY
    except (ImportError, OSError, ValueError):
        limited = False
    code = errno.ENOSPC if full else errno.EFBIG if limited else errno.EIO
    return OSError(code, f"{os.strerror(code)} (torch.save: {str(exc).splitlines()[0]})", str(path))


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Build a directory under a temporary name and rename it to ``path`` when complete.

    ``path`` must not exist or be an empty directory.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_dir(path)
    try:
        yield tmp
        if path.exists():
            path.rmdir()  # only succeeds when empty: never clobbers a user's data
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
