"""Plug-ins: methods and tasks from any installed package, with their configs.

A package adds a method with one entry point in the group ``solo_rgbd.methods``::

    [options.entry_points]
    solo_rgbd.methods =
        my_method = my_pkg.my_method:MyMethod

and, next to the module, ``configs/method/my_method.yaml`` (``my_pkg/configs/...``). The
method's class registers itself with ``@register_method("my_method")`` when the entry point is
loaded; the ``configs`` folder next to each entry point's module joins Hydra's search path, so
``method=my_method`` composes like a built-in. A task is one entry point in
``solo_rgbd.tasks`` (a :class:`~solo_rgbd.tasks.base.TaskSpec`), its config in the same
``configs/`` folder. A store (a backend of decoded pairs, ``data.format=NAME``) is one entry
point in ``solo_rgbd.stores`` (see :func:`solo_rgbd.data.store.open_store`). Built-in methods
and tasks are declared the same way in solo-rgbd's own ``setup.cfg``.
``SOLO_RGBD_CONFIGS=dir1:dir2`` adds config folders by hand.
"""

from __future__ import annotations

import importlib.util
import os
from functools import lru_cache
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

METHODS_GROUP = "solo_rgbd.methods"
#: tasks: ``NAME = pkg.module:SPEC`` (a TaskSpec with its workflows)
TASKS_GROUP = "solo_rgbd.tasks"
#: root config schemas: ``NAME = pkg.module:Dataclass`` types ``configs/NAME.yaml``
CONFIGS_GROUP = "solo_rgbd.configs"
#: stores: ``NAME = pkg.module:open_fn``, ``open_fn(spec: DecodeSpec) -> PairStore``
STORES_GROUP = "solo_rgbd.stores"


@lru_cache(maxsize=1)
def method_entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=METHODS_GROUP)}


@lru_cache(maxsize=1)
def task_entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=TASKS_GROUP)}


@lru_cache(maxsize=1)
def config_schema_entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=CONFIGS_GROUP)}


@lru_cache(maxsize=1)
def store_entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=STORES_GROUP)}


def _module_dir(module: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    return Path(spec.origin).resolve().parent


def config_search_dirs(own: Path) -> list[Path]:
    """Extra config roots: ``SOLO_RGBD_CONFIGS`` folders, then each plug-in's ``configs/``."""
    dirs = [Path(p) for p in os.environ.get("SOLO_RGBD_CONFIGS", "").split(os.pathsep) if p]
    for ep in [*method_entry_points().values(), *task_entry_points().values()]:
        folder = _module_dir(ep.module)
        if folder is not None and (folder / "configs").is_dir():
            dirs.append(folder / "configs")
    own = own.resolve()
    seen: list[Path] = []
    for d in dirs:
        d = d.resolve()
        if d != own and d not in seen and d.is_dir():
            seen.append(d)
    return seen
