"""Packages built in a temporary site folder, as pip would install them."""

import os
from pathlib import Path


def plugin_env(site: Path, cache: Path) -> dict[str, str]:
    """The environment of a subprocess that sees the packages in ``site``."""
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
        "SOLO_RGBD_CACHE": str(cache),
    }
