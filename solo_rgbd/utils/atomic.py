"""Atomic, durable file writes: a reader never sees a half-written checkpoint, export or dataset.

Every writer builds the new content under a temporary name in the same folder, flushes it to
disk (``fsync``), renames it into place (``os.replace``, atomic on POSIX) and syncs the folder
so the rename itself survives a crash. On an exception the temporary is removed.
A file rewritten again and again (a run's ``last.ckpt``) can recycle the file of the version
before last instead (:class:`RecycledFile`).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol


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


def file_mode() -> int:
    """The mode a plain ``open`` gives a new file: 0666 less the umask."""
    return 0o666 & ~_umask()


def temp_file(path: Path, suffix: str = ".tmp") -> Path:
    """An empty temporary file beside ``path``, with the mode a plain ``open`` would give it
    (mkstemp makes 0600; runs are shared in labs, so the umask decides)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, file_mode())
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


def spare_of(path: str | os.PathLike[str]) -> Path:
    """Where :class:`RecycledFile` keeps the version before last of ``path``: a temporary's
    name (``.<name>.spare.tmp``), so :func:`remove_leftovers` removes it too."""
    path = Path(path)
    return path.parent / f".{path.name}.spare.tmp"


class Staged(Protocol):
    """A write whose bytes are in place under a temporary name: :meth:`commit` makes it
    durable and puts it where readers look; :meth:`discard` drops it (the old version stays)."""

    def commit(self) -> None: ...

    def discard(self) -> None: ...


class StagedAll:
    """Several staged writes committed in order; a failed one discards those after it."""

    def __init__(self, parts: list[Staged]) -> None:
        self.parts = parts

    def commit(self) -> None:
        for i, part in enumerate(self.parts):
            try:
                part.commit()
            except BaseException:
                for rest in self.parts[i + 1 :]:
                    rest.discard()
                raise

    def discard(self) -> None:
        for part in self.parts:
            part.discard()


class RecycledFile:
    """A new version of ``path`` for a file written again and again, staged in the file of the
    version before last (:func:`spare_of`): write :attr:`spare` in place (open it without
    truncating, as :func:`torch_save_bytes` and :func:`~solo_rgbd.utils.direct_io.write_out`
    do), then :meth:`commit` fsyncs it and swaps it in by one atomic exchange of the two names
    (Linux ``renameat2(RENAME_EXCHANGE)``), which keeps the old version as the next spare.
    Writing over a file's cached pages, or its blocks, costs less than a new file plus
    unlinking the old one (a 135 MB checkpoint through the page cache: 92 against 151 ms,
    ``bench/ckpt_stall.py``).

    A reader sees the old or the new version, never a mix, as with :func:`atomic_path`; a
    spare that is not a plain file of one link (a symlink, a user's ``ln last.ckpt keep.ckpt``)
    is never written through: it is unlinked and a new file made. Where the exchange is not
    supported the new file is renamed over ``path``. A failed commit removes the spare;
    :func:`discard_spare` removes it when the writes are over. Unlike a new file per version, a
    process that holds ``path`` open across two commits (a long ``mmap``) sees the version
    after next: keep a version with ``cp`` or ``ln``, not an open handle.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.spare = spare_of(self.path)
        if not rewritable_in_place(self.spare):
            with contextlib.suppress(FileNotFoundError):
                self.spare.unlink()
            os.replace(temp_file(self.path), self.spare)  # a new file with the umask's mode

    def commit(self) -> None:
        try:
            fsync_file(self.spare)
            if not (self.path.exists() and exchange_names(self.spare, self.path)):
                os.replace(self.spare, self.path)
            fsync_dir(self.path.parent)
        except BaseException:
            self.discard()
            raise

    def discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.spare.unlink()


def discard_spare(path: str | os.PathLike[str]) -> None:
    """Remove the spare :class:`RecycledFile` keeps beside ``path`` (when the run is over)."""
    with contextlib.suppress(FileNotFoundError):
        spare_of(path).unlink()


def rewritable_in_place(path: Path) -> bool:
    """``path`` is a plain file of one link that we may write: writing over it changes no
    other name (not a symlink's target, not a user's hard link to it)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and os.access(path, os.W_OK)


_AT_FDCWD, _RENAME_EXCHANGE = -100, 2
_UNSUPPORTED = {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EPERM}


@functools.cache
def _renameat2() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True).renameat2  # glibc >= 2.28
    except (AttributeError, OSError):
        return None


def exchange_names(a: Path, b: Path) -> bool:
    """Swap the names ``a`` and ``b`` atomically; False where the system or file system can't."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in _UNSUPPORTED:
        return False
    raise OSError(code, f"{os.strerror(code)} (exchanging '{a}' and '{b}')")


def torch_save_bytes(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` through a file object: the archive's inner name is always 'archive', so
    the bytes depend on ``obj`` alone, not on the (temporary) file name. An existing file is
    written over in place and cut to the new length (its cached pages are reused); symlinks
    are not followed."""
    import torch

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
    with os.fdopen(fd, "wb") as f:
        try:
            torch.save(obj, f)
            f.truncate()
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
