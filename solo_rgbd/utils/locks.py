"""Inter-process locks: a run folder for the life of its run, a shared cache while it is built.

Where the file system has ``flock`` (local disks, most NFS and Lustre mounts) the lock is
``filelock.FileLock``: the kernel releases it when its process dies, however it dies. Where it
has not (Lustre without ``-o flock``, some NFS and FUSE mounts), the lock is a file made with
``O_EXCL`` that records the holder's host and PID (:class:`PidFileLock`); a lock left by a dead
process on this host is taken over. One line says which, once per folder. Which one is used is
decided here, by trying ``flock``, so it does not depend on the ``filelock`` release.
"""

from __future__ import annotations

import errno
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from solo_rgbd.errors import ConfigError, DataError
from solo_rgbd.utils.console import say

#: files of a run folder that belong to its lock, not to the run's results
RUN_LOCK_FILES = (".run.lock", ".run.pid")
_NO_FLOCK = {errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOLCK, errno.EINVAL}
_told: set[Path] = set()


def flock_works(probe: Path) -> bool:
    """Whether ``flock`` works on the file system of ``probe`` (made if absent)."""
    try:
        import fcntl
    except ImportError:  # Windows: filelock locks with msvcrt
        return True
    fd = os.open(probe, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    except OSError as exc:
        return exc.errno not in _NO_FLOCK  # EWOULDBLOCK: it works, another process holds it
    finally:
        os.close(fd)


class PidFileLock:
    """A lock that is a file holding ``host pid`` (made with ``O_EXCL``), for file systems
    without ``flock``. A lock whose process is gone from this host is taken over; one from
    another host is held until its process deletes it (or a person does)."""

    def __init__(self, path: str | os.PathLike[str], timeout: float) -> None:
        self.lock_file = str(path)
        self.timeout = timeout
        self.me = f"{socket.gethostname()} {os.getpid()}"

    def holder(self) -> str:
        try:
            return Path(self.lock_file).read_text().strip()
        except OSError:
            return ""

    def _stale(self, holder: str) -> bool:
        host, _, pid = holder.rpartition(" ")
        if host != socket.gethostname() or not pid.isdigit():
            return False
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except OSError:
            return False  # alive, another user's
        return False

    def acquire(self) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fd = os.open(self.lock_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                holder = self.holder()
                if holder and self._stale(holder):
                    Path(self.lock_file).unlink(missing_ok=True)
                    continue
                if time.monotonic() >= deadline:
                    raise Timeout(self.lock_file) from None
                time.sleep(0.1)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(self.me + "\n")
            return

    def release(self) -> None:
        if self.holder() == self.me:
            Path(self.lock_file).unlink(missing_ok=True)

    def __enter__(self) -> PidFileLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _lock(path: Path, pid_file: Path, timeout: float) -> FileLock | PidFileLock:
    """``FileLock(path)`` where ``flock`` works, else a :class:`PidFileLock` on ``pid_file``."""
    if flock_works(path):
        return FileLock(str(path), timeout=timeout)
    if path.parent not in _told:
        _told.add(path.parent)
        say(
            f"note: the file system of '{path.parent}' has no flock; locking with "
            f"'{pid_file.name}' (host and PID; a lock of a dead process on this host is taken "
            "over).",
            err=True,
        )
    return PidFileLock(pid_file, timeout)


@contextmanager
def cache_lock(target: str | os.PathLike[str], timeout_s: float = 3600.0) -> Iterator[None]:
    """Hold a lock on ``<target>.lock`` next to ``target``; a waiting process blocks up to an
    hour."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        path = target.parent / f"{target.name}.lock"
        lock = _lock(path, path.with_name(path.name + ".pid"), timeout_s)
        lock.acquire()
    except Timeout:
        raise DataError(
            f"waited {timeout_s:.0f} s for '{target}.lock' held by another process; if no "
            "other solo-rgbd process is running, delete the lock file."
        ) from None
    except OSError as exc:
        raise DataError(
            f"cannot take the lock '{target}.lock' ({exc.strerror}); set SOLO_RGBD_CACHE to a "
            "writable folder."
        ) from None
    try:
        yield
    finally:
        lock.release()


def hold_run_lock(run_dir: str | os.PathLike[str]) -> FileLock | PidFileLock:
    """Take the lock of ``run_dir`` for the life of a run (release it when the run ends).

    A second process that wants the same run folder gets a :class:`ConfigError` naming the
    process that holds it, at once: two runs never write one folder.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    info = run_dir / RUN_LOCK_FILES[1]
    lock = _lock(run_dir / RUN_LOCK_FILES[0], info, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        try:
            host, _, pid = info.read_text().strip().rpartition(" ")
        except OSError:
            host, pid = "", ""
        holder = f"process {pid} on {host}" if pid else "another process"
        raise ConfigError(
            f"run folder '{run_dir}' is in use by {holder}; wait for that run to end (or stop "
            "it), or start this one with another run_name."
        ) from None
    if isinstance(lock, FileLock):  # who holds it, for the message above
        info.write_text(f"{socket.gethostname()} {os.getpid()}\n")
    return lock


@contextmanager
def run_lock(run_dir: str | os.PathLike[str]) -> Iterator[None]:
    """:func:`hold_run_lock` for a ``with`` block."""
    lock = hold_run_lock(run_dir)
    try:
        yield
    finally:
        lock.release()
