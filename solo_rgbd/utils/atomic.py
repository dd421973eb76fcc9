"""Atomic, durable file writes: a reader never sees a half-written checkpoint, export or dataset.

Every writer builds the new content under a temporary name in the same folder, flushes it to
disk (``fsync``), renames it into place (``os.replace``, atomic on POSIX) and syncs the folder
so the rename itself survives a crash. On an exception the temporary is removed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
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


def fsync_file(path: str | os.PathLike[str]) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _umask() -> int:
    """The process's umask, read without changing it where Linux allows."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temp_file(path: Path, suffix: str = ".tmp") -> Path:
    """An empty temporary file beside ``path``, with the mode a plain ``open`` would give it
    (mkstemp makes 0600; runs are shared in labs, so the umask decides)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())
    return Path(tmp)


def temp_dir(path: Path, suffix: str = ".partial") -> Path:
    """A temporary folder beside ``path`` with the umask's mode (mkdtemp makes 0700)."""
    tmp = tempfile.mkdtemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.chmod(tmp, 0o777 & ~_umask())
    return Path(tmp)


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
    tmp_path = temp_file(path)
    try:
        yield tmp_path
        fsync_file(tmp_path)
        os.replace(tmp_path, path)
        fsync_dir(path.parent)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def torch_save_bytes(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` through a file object: the archive's inner name is always 'archive', so
    the bytes depend on ``obj`` alone, not on the (temporary) file name."""
    import torch

    with open(path, "wb") as f:
        try:
            torch.save(obj, f)
        except RuntimeError as exc:  # torch's zip writer reports a failed write this way
            raise _write_failed(Path(path), exc) from None


def _write_failed(path: Path, exc: RuntimeError) -> OSError:
    """torch.save's RuntimeError as the OSError it stands for (ENOSPC when the disk is full)."""
    try:
        full = shutil.disk_usage(path.parent).free < (64 << 20)
    except OSError:
        full = False
    code = errno.ENOSPC if full else errno.EIO
    return OSError(code, f"{os.strerror(code)} (torch.save: {str(exc).splitlines()[0]})", str(path))


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` that writes to a temporary file and renames it into place."""
    with atomic_path(path) as tmp:
        torch_save_bytes(obj, tmp)


def atomic_write_text(text: str, path: str | os.PathLike[str]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


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
