"""The task registry: ``task_spec(name)`` gives the :class:`~solo_rgbd.tasks.base.TaskSpec`
behind ``task=name`` (entry-point group ``solo_rgbd.tasks``, loaded on first lookup)."""

from __future__ import annotations

from solo_rgbd.errors import ConfigError
from solo_rgbd.tasks.base import TaskSpec
from solo_rgbd.utils.plugins import task_entry_points


def registered_tasks() -> list[str]:
    return sorted(task_entry_points())


def task_spec(name: str) -> TaskSpec:
    eps = task_entry_points()
    if name not in eps:
        raise ConfigError(
            f"task '{name}' is not registered; registered: {', '.join(registered_tasks())}. "
            "A package adds one with an entry point in the group solo_rgbd.tasks."
        )
    spec = eps[name].load()
    if not isinstance(spec, TaskSpec) or spec.train is None or spec.evaluate is None:
        raise ConfigError(
            f"the entry point of task '{name}' ({eps[name].value}) is not a TaskSpec with "
            "train and evaluate workflows."
        )
    return spec
