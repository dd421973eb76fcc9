"""Preemption: SIGTERM, SIGINT and SIGUSR1 become "finish this step, checkpoint, exit 128+N".

:class:`SignalWatch` replaces the handlers of those signals while training runs (it is
installed from ``on_train_start``, after Lightning registered its own, so Lightning's
SIGTERM handling, which exits 0, never fires) and restores the previous ones afterwards. A
handler only records the signal; :class:`solo_rgbd.engine.checkpoint.RunCheckpoint` acts on
it at the end of the current optimizer step. A second Ctrl-C aborts at once without a
checkpoint.

On SLURM, ask for a warning signal before the time limit and requeue on exit code 138
(``run_name`` defaults to ``slurm-<job id>``, which a requeued job keeps)::

    #SBATCH --signal=USR1@120 --requeue
    srun solo-rgbd pretrain experiment=paper resume=auto
    [ $? -eq 138 ] && scontrol requeue $SLURM_JOB_ID

(``--signal`` without ``B:`` signals the tasks started by ``srun``; with ``B:`` only the batch
shell gets it, which must then forward it.)
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

from solo_rgbd.errors import Aborted
from solo_rgbd.utils.console import say

WATCHED = ("SIGTERM", "SIGINT", "SIGUSR1")


class SignalWatch:
    """Record the first preemption signal instead of dying from it."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signals can only be handled in the main thread
        for name in WATCHED:
            signum = getattr(signal, name, None)
            if signum is not None:
                self._previous[signum] = signal.signal(signum, self._handle)

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            # a second Ctrl-C: stop now, without a checkpoint. Not KeyboardInterrupt, which
            # Lightning turns into a silent exit 1
            raise Aborted(
                "aborted by a second Ctrl-C: this step was not checkpointed; the last "
                "checkpoint on disk (checkpoints/last.ckpt, if any) is from before it."
            )
        if self.signum is None:
            self.signum = signum
            say(
                f"\nreceived {signal.Signals(signum).name}: finishing this step and writing a "
                "checkpoint" + (" (Ctrl-C again to abort without one)" if signum == 2 else ""),
                err=True,
                all_ranks=True,
            )
