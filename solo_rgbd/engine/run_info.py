"""``run.json``: how a run was started and where it ran, one entry per session.

A session is one process's share of a run (a fresh start, then one per resume): its command
line, package versions, device, start and end time, wall time and how it ended (``finished``,
``preempted``, ``stopped`` or ``failed: <error>``). A session killed with SIGKILL keeps
``ended: null``. Reports read this file; nothing decides the run's future from it.
"""

from __future__ import annotations

import json
import platform
import shlex
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from solo_rgbd.utils.atomic import atomic_write_text

PACKAGES = ("solo-rgbd", "torch", "lightning", "timm", "kornia", "lightly", "numpy")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def cpu_name() -> str:
    """The CPU's model as ``lscpu`` names it (Linux), else what the platform module knows."""
    import subprocess

    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    names = [ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")]
    return next((n for n in names if n), "") or platform.processor() or platform.machine()


def device_info(trainer: Any) -> dict[str, Any]:
    """The accelerator, device name, process count and precision of a Lightning Trainer."""
    import torch

    root = trainer.strategy.root_device
    name = torch.cuda.get_device_name(root) if root.type == "cuda" else cpu_name()
    return {
        "accelerator": root.type,
        "name": name,
        "world_size": int(trainer.world_size),
        "precision": str(trainer.precision),
        "torch_threads": torch.get_num_threads(),
    }


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class RunInfo:
    """``run.json`` of a run folder: :meth:`start` then :meth:`end` around one session."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / "run.json"
        self._t0 = 0.0

    def _sessions(self) -> list[dict[str, Any]]:
        try:
            sessions = json.loads(self.path.read_text())["sessions"]
        except (OSError, ValueError, KeyError, TypeError):
            return []  # a first session, or a damaged file: start over, never fail a run
        # entries of the wrong type are damage too: dropped, never a failed run
        return [s for s in sessions if isinstance(s, dict)] if isinstance(sessions, list) else []

    def _write(self, sessions: list[dict[str, Any]]) -> None:
        total = sum(float(s.get("wall_s") or 0.0) for s in sessions)
        atomic_write_text(
            json.dumps({"wall_s_total": round(total, 3), "sessions": sessions}, indent=1),
            self.path,
        )

    def start(self, trainer: Any, resumed_from: Path | None) -> None:
        self._t0 = time.monotonic()
        session = {
            "command": shlex.join(sys.argv),
            "resumed_from": str(resumed_from) if resumed_from else None,
            "started": _now(),
            "ended": None,
            "wall_s": None,
            "status": "running",
            "host": platform.node(),
            "device": device_info(trainer),
            "versions": versions(),
        }
        self._write([*self._sessions(), session])

    def end(self, status: str) -> None:
        sessions = self._sessions()
        if not sessions:
            return
        sessions[-1].update(
            ended=_now(), wall_s=round(time.monotonic() - self._t0, 3), status=status
        )
        self._write(sessions)


def status_of(exc: BaseException | None) -> str:
    """How a session ended, from the exception that ended it (None: it finished)."""
    if exc is None:
        return "finished"
    from solo_rgbd.errors import Aborted, Preempted

    if isinstance(exc, Preempted):
        return "preempted"
    if isinstance(exc, (Aborted, KeyboardInterrupt)):
        return "stopped"
    return f"failed: {type(exc).__name__}: {str(exc)[:300]}"
