"""Inter-process file locks (``filelock``) for work that several processes may start at once:
generating the synthetic dataset, building shared caches."""

from __future__ import annotations

import os
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
