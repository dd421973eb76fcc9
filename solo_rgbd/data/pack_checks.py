"""What ``solo-rgbd data pack`` checks before it writes anything (issue 30).

- its settings (``--size``, ``--workers``, ``--chunk-bytes``), so a bad one writes nothing;
- ``OUT.partial``: continued only when this command made it (its ``plan.json`` says so, or it
  is empty); a folder of the user's with that name is refused, never adopted or deleted;
- one pack per OUT at a time: a second is refused at once while the first holds the lock;
- and, while and after LitData runs: a rerun continues only the same job, a pair that could not
  be read refuses the pack, LitData's errors come back as the library's own paragraphs.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

from solo_rgbd.errors import DataError
from solo_rgbd.utils.atomic import atomic_write_text
from solo_rgbd.utils.locks import FileLock

#: what ``plan.json`` of a pack in progress holds; a folder without it is not ours
PLAN = "plan.json"
_BYTES = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(tb|gb|mb|kb|t|g|m|k|b)?\s*$", re.I)


def check_pack_settings(size: object, workers: object, chunk_bytes: object) -> int | str:
    """One paragraph naming the bad setting, before anything is written; returns the chunk
    size as LitData takes it (bytes, or a string with its unit)."""
    if not isinstance(size, int) or isinstance(size, bool) or not 8 <= size <= 8192:
        raise DataError(
            f"--size {size!r} is not an image size; give the side in pixels the pack stores "
            "(8 to 8192; the data.image_size you will train at, e.g. --size 256)."
        )
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise DataError(f"--workers {workers!r} must be a whole number of processes, 1 or more.")
    text = str(chunk_bytes)
    match = _BYTES.match(text)
    if match is None or float(match.group(1)) <= 0:
        raise DataError(
            f"--chunk-bytes '{text}' is not a size; give bytes or a size with a unit (B, KB, "
            "MB, GB, TB), e.g. 64MB (LitData's chunk size)."
        )
    return text.strip() if match.group(2) else int(float(match.group(1)))


def check_partial(work: Path) -> None:
    """``work`` (OUT.partial) is absent, empty, or an unfinished pack of this command."""
    if not work.exists():
        return
    if not work.is_dir():
        raise DataError(f"'{work}' exists and is not a folder; move it away, then pack again.")
    if (work / PLAN).is_file() or not any(work.iterdir()):
        return
    raise DataError(
        f"'{work}' exists and was not made by 'solo-rgbd data pack' (it has no {PLAN}); it is "
        "left as it is. Move it away or choose another OUT, then pack again."
    )


@contextlib.contextmanager
def pack_lock(out: Path) -> Iterator[None]:
    """Hold ``.OUT.pack.lock`` beside OUT for the pack; a second pack into OUT is refused at
    once (:mod:`solo_rgbd.utils.locks`: with or without ``flock``)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    path = out.with_name(f".{out.name}.pack.lock")
    lock = FileLock(path, remove=True)
    if not lock.acquire():
        raise DataError(
            f"another 'solo-rgbd data pack' into '{out}' is running (it holds '{path}'); wait "
            "for it to finish, or pack into another folder."
        )
    try:
        yield
    finally:
        lock.release()


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (none if it is gone)."""
    import psutil

    try:
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


def check_plan(work: Path, plan: dict) -> None:
    """A rerun continues only the same job (same roots, size and pairs)."""
    saved = work / PLAN
    if saved.exists():
        try:
            same = json.loads(saved.read_text()) == plan
        except (OSError, ValueError):
            same = False
        if not same:
            raise DataError(
                f"'{work}' is an unfinished pack of other data, another size, or files that "
                "changed since it started (or its plan.json is damaged); delete that folder to "
                "start this pack anew."
            )
        return
    work.mkdir(parents=True, exist_ok=True)
    atomic_write_text(json.dumps(plan), saved)


def refuse_bad_pairs(errors: Path, work: Path) -> None:
    lines = [line for f in sorted(errors.glob("*.txt")) for line in f.read_text().splitlines()]
    if lines:
        shutil.rmtree(work, ignore_errors=True)
        more = f" (and {len(lines) - 1} more pair(s))" if len(lines) > 1 else ""
        raise DataError(f"packing stopped, nothing was kept: {lines[0]}{more}")
    shutil.rmtree(errors)


def pack_error(exc: BaseException, work: Path) -> BaseException:
    """LitData re-raises a worker's error as a RuntimeError holding its traceback: give back
    the library's own one-paragraph errors (a corrupt image, a missing depth map) and a full
    disk as such; anything else as it came."""
    text = str(exc)
    if getattr(exc, "errno", None) == 28 or "No space left on device" in text:
        shutil.rmtree(work, ignore_errors=True)
        return DataError(
            f"the disk under '{work.parent}' filled up while packing; the partial pack was "
            "removed. Free space or pack elsewhere, then rerun."
        )
    marker = "solo_rgbd.errors.DataError: "
    if marker in text:
        message = text.rsplit(marker, 1)[1].strip().splitlines()[0]
        return DataError(message + f" (the pack so far is kept in '{work}'; rerun to continue)")
    return exc
