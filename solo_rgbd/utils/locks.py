"""Inter-process file locks (``filelock``) for work that several processes may start at once:
generating the synthetic dataset, building shared caches."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from solo_rgbd.errors import DataError


def cache_lock(target: str | os.PathLike[str], timeout_s: float = 3600.0) -> FileLock:
    """A lock on ``<target>.lock`` next to ``target``; a waiting process blocks up to an hour."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"cannot create the cache folder '{target.parent}' ({exc.strerror}); set "
            "SOLO_RGBD_CACHE to a writable folder."
        ) from None
    return _Lock(str(target) + ".lock", timeout=timeout_s)


class _Lock(FileLock):
    def __enter__(self):  # type: ignore[override]
        try:
            return super().__enter__()
        except Timeout:
            raise DataError(
                f"waited {self.timeout:.0f} s for '{self.lock_file}' held by another process; "
                "if no other solo-rgbd process is running, delete the lock file."
            ) from None
        except OSError as exc:
            raise DataError(
                f"cannot take the lock '{self.lock_file}' ({exc.strerror}); set SOLO_RGBD_CACHE "
                "to a writable folder."
            ) from None


#: files of a run folder that belong to its lock, not to the run's results
RUN_LOCK_FILES = (".run.lock", ".run.pid")


def hold_run_lock(run_dir: str | os.PathLike[str]) -> FileLock:
    """Take ``<run_dir>/.run.lock`` for the life of a run (release it when the run ends).

    A second process that wants the same run folder gets a :class:`ConfigError` naming the
    process that holds it, at once: two runs never write one folder.
    """
    from solo_rgbd.errors import ConfigError

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(run_dir / RUN_LOCK_FILES[0]), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        holder = (run_dir / RUN_LOCK_FILES[1]).read_text().strip() or "another process"
        raise ConfigError(
            f"run folder '{run_dir}' is in use by {holder}; wait for that run to end (or stop "
            "it), or start this one with another run_name."
        ) from None
    (run_dir / RUN_LOCK_FILES[1]).write_text(f"process {os.getpid()} on {os.uname().nodename}\n")
    return lock


@contextmanager
def run_lock(run_dir: str | os.PathLike[str]) -> Iterator[None]:
    """:func:`hold_run_lock` for a ``with`` block."""
    lock = hold_run_lock(run_dir)
    try:
        yield
    finally:
        lock.release()
