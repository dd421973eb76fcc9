"""Names that become paths: one path component, never a way out of the folder they name into."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from solo_rgbd.errors import ConfigError


def is_component(value: object) -> bool:
    """A non-empty single path component: no separator, not '.' or '..', not absolute."""
    if not isinstance(value, str) or value in ("", ".", ".."):
        return False
    seps = {"/", "\\", os.sep} | ({os.altsep} if os.altsep else set())
    return not any(s in value for s in seps) and "\0" not in value


def check_component(value: object, key: str) -> str:
    """``value`` as a path component, or a :class:`ConfigError` naming ``key``."""
    if not is_component(value):
        raise ConfigError(
            f"config key '{key}' = {value!r} becomes a folder name, so it must be one path "
            "component: no '/' or '\\', not '..' or '.', not absolute, not empty. Pick a plain "
            f"name, e.g. {key}=run1, and point output_dir (or the path key) at the folder."
        )
    return str(value)


#: an empty file in every folder of predictions solo-rgbd writes: the only ones it replaces
PREDICTIONS_MARKER = ".solo-rgbd-predictions"


def remove_own_dir(path: Path, marker: str) -> None:
    """Delete ``path`` only if it holds solo-rgbd's ``marker``; anything else is an error."""
    if not path.exists():
        return
    if not (path / marker).is_file():
        raise ConfigError(
            f"'{path}' exists and was not written by solo-rgbd (no {marker} in it), so it is "
            "not replaced; move it away or write elsewhere with out=DIR."
        )
    shutil.rmtree(path)
