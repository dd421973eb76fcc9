"""Inter-process locks: a run folder for the life of its run, a shared cache while it is built,
an output folder while a pack writes it.

A :class:`FileLock` is ``flock`` on its file where the file system has it (local disks, most
NFS and Lustre mounts): the kernel releases it when its process dies, however it dies. Where it
has not (Lustre without ``-o flock``, some NFS and FUSE mounts; Windows) it is a file made with
``O_EXCL`` that holds the holder's host and PID; a lock left by a dead process on this host is
taken over. One line says so, once per folder.
"""

from __future__ import annotations

import errno
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from solo_rgbd.errors import ConfigError, DataError
from solo_rgbd.utils.console import say

#: files of a run folder that belong to its lock, not to the run's results
RUN_LOCK_FILES = (".run.lock", ".run.pid")
_NO_FLOCK = {errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOLCK, errno.EINVAL}
_told: set[Path] = set()


def _me() -> str:
    return f"{socket.gethostname()} {os.getpid()}"


def _alive(holder: str) -> bool:
    """A ``host pid`` holder is alive unless it is a process of this host that is gone."""
    host, _, pid = holder.rpartition(" ")
    if host != socket.gethostname() or not pid.isdigit():
        return True  # another host's (or unreadable): only its process or a person frees it
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:
        pass  # alive, another user's
    return True


class FileLock:
    """``flock`` on ``path``, else a ``host pid`` file ``pid_file`` made with ``O_EXCL`` (module
    doc). A ``pid_file`` given also records the holder under ``flock``, for messages;
    ``remove`` deletes ``path`` on release (a lock that leaves nothing behind)."""

    def __init__(self, path: Path, pid_file: Path | None = None, remove: bool = False) -> None:
        self.path, self.remove, self.record = Path(path), remove, pid_file is not None
        self.pid_file = Path(pid_file) if pid_file else Path(f"{path}.pid")
        self._fd: int | None = None
        self._pid_mode = False

    def holder(self) -> str:
        """``host pid`` of the process that holds (or last held) the lock, or ''."""
        try:
            return self.pid_file.read_text().strip()
        except OSError:
            return ""

    def acquire(self, timeout: float = 0.0) -> bool:
        """Take the lock, waiting up to ``timeout`` seconds; False: another process holds it."""
        deadline = time.monotonic() + timeout
        while not self._try():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
        return True

    def _try(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        if not self._pid_mode:
            try:
                import fcntl

                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except ImportError:
                self._no_flock()
            except OSError as exc:
                if exc.errno not in _NO_FLOCK:  # EWOULDBLOCK: held
                    os.close(fd)
                    return False
                self._no_flock()
        if self._pid_mode:
            os.close(fd)
            return self._try_pid_file()
        if os.stat(self.path).st_ino != os.fstat(fd).st_ino:  # the holder removed it meanwhile
            os.close(fd)
            return False
        self._fd = fd
        if self.record:
            self.pid_file.write_text(_me() + "\n")
        return True

    def _no_flock(self) -> None:
        self._pid_mode = True
        if self.path.parent not in _told:
            _told.add(self.path.parent)
            say(
                f"note: the file system of '{self.path.parent}' has no flock; locking with "
                f"'{self.pid_file.name}' (host and PID; a lock of a dead process on this host "
                "is taken over).",
                err=True,
            )

    def _try_pid_file(self) -> bool:
        try:
            fd = os.open(self.pid_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            holder = self.holder()
            if holder and not _alive(holder):
                self.pid_file.unlink(missing_ok=True)  # a dead process's: taken over
                return self._try_pid_file()
            return False
        with os.fdopen(fd, "w") as f:
            f.write(_me() + "\n")
        return True

    def release(self) -> None:
        if self.remove:
            self.path.unlink(missing_ok=True)  # while still held: nobody takes a stale file
        if self._fd is not None:
            os.close(self._fd)  # releases the flock
            self._fd = None
        elif self._pid_mode and self.holder() == _me():
            self.pid_file.unlink(missing_ok=True)


@contextmanager
def cache_lock(target: str | os.PathLike[str], timeout_s: float = 3600.0) -> Iterator[None]:
    """Hold ``<target>.lock`` next to ``target``; a waiting process blocks up to an hour."""
    lock = FileLock(Path(f"{target}.lock"))
    try:
        lock.path.parent.mkdir(parents=True, exist_ok=True)
        held = lock.acquire(timeout_s)
    except OSError as exc:
        raise DataError(
            f"cannot take the lock '{lock.path}' ({exc.strerror}); set SOLO_RGBD_CACHE to a "
            "writable folder."
        ) from None
    if not held:
        raise DataError(
            f"waited {timeout_s:.0f} s for '{lock.path}' held by another process; if no other "
            "solo-rgbd process is running, delete the lock file."
        )
    try:
        yield
    finally:
        lock.release()


def hold_run_lock(run_dir: str | os.PathLike[str]) -> FileLock:
    """Take the lock of ``run_dir`` for the life of a run (release it when the run ends). A
    second process that wants the folder gets a :class:`ConfigError` naming the holder."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(run_dir / RUN_LOCK_FILES[0], run_dir / RUN_LOCK_FILES[1])
    if not lock.acquire():
        host, _, pid = lock.holder().rpartition(" ")
        raise ConfigError(
            f"run folder '{run_dir}' is in use by "
            f"{f'process {pid} on {host}' if pid else 'another process'}; wait for that run to "
            "end (or stop it), or start this one with another run_name."
        )
    return lock
