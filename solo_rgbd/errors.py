"""User-facing errors.

Every error a user can cause by their data or their config is a :class:`SoloRGBDError` (or a
subclass) whose message is one paragraph: what was wrong, where (file or config key), and what
to do. The CLI prints the message without a traceback and exits with status 2.
"""

from __future__ import annotations


class SoloRGBDError(Exception):
    """Base class for errors caused by user input (data, config, command line)."""


class DataError(SoloRGBDError, ValueError):
    """A dataset on disk cannot be used as it is (missing files, unreadable images...)."""


class ConfigError(SoloRGBDError, ValueError):
    """A configuration key or value is wrong."""
