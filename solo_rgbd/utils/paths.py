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


def own_marker(path: Path) -> Path:
    """The empty file beside a folder solo-rgbd wrote (``.<name>.solo-rgbd``), which marks it as
    one it may replace; outside the folder, so the folder holds only its own files."""
    return path.parent / f".{path.name}.solo-rgbd"


def mark_own_dir(path: Path) -> None:
    own_marker(path).touch()


def remove_own_dir(path: Path) -> None:
    """Delete ``path`` only if solo-rgbd marked it as its own; anything else is an error."""
    if not path.exists():
        return
    if not own_marker(path).is_file():
        raise ConfigError(
            f"'{path}' exists and was not written by solo-rgbd (no {own_marker(path).name} "
            "beside it), so it is not replaced; move it away or write elsewhere with out=DIR."
        )
    shutil.rmtree(path)
