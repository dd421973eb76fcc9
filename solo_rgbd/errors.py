"""User-facing errors.

Every error a user can cause by their data or their config is a :class:`SoloRGBDError` (or a
subclass) whose message is one paragraph: what was wrong, where (file or config key), and what
to do. The CLI prints the message without a traceback and exits with the error's
``exit_code``: 2 for bad input, 3 for a run stopped by a non-finite loss, 128 + N for a run
stopped by signal N after writing its checkpoint.
"""

from __future__ import annotations


class SoloRGBDError(Exception):
    """Base class for errors caused by user input (data, config, command line)."""

    exit_code: int = 2


class DataError(SoloRGBDError, ValueError):
    """A dataset on disk cannot be used as it is (missing files, unreadable images...)."""


class ConfigError(SoloRGBDError, ValueError):
    """A configuration key or value is wrong."""


class CheckpointError(SoloRGBDError, ValueError):
    """A checkpoint or export handed in by the user cannot be used (corrupt, foreign, tampered)."""


class NonFiniteError(SoloRGBDError, FloatingPointError):
    """Training produced a non-finite loss or gradient norm and was stopped at that step."""

    exit_code = 3


class Preempted(SoloRGBDError):
    """A run stopped by SIGTERM / SIGINT / SIGUSR1 after writing a checkpoint to resume from."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


class Aborted(SoloRGBDError):
    """A second Ctrl-C: the run stops at once, without a checkpoint of the current step."""

    exit_code = 130
