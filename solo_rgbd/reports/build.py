"""``solo-rgbd report PATH``: which page a folder gets, written as ``PATH/report.html``."""

from __future__ import annotations

from pathlib import Path

from solo_rgbd.errors import ConfigError
from solo_rgbd.reports.page import Page


def page_of(path: Path) -> Page:
    """The page of a compare folder, a task run or eval folder, or a pretraining run."""
    from solo_rgbd.reports import grid, run, task

    if grid.is_grid(path):
        return grid.grid_page(path)
    if run.is_pretrain_run(path):
        return run.pretrain_page(path)
    if task.is_task_run(path) or task.is_eval_dir(path):
        return task.task_page(path)
    raise ConfigError(
        f"'{path}' is not a run folder solo-rgbd wrote: 'solo-rgbd report' takes a pretraining "
        "run (config.yaml naming a method, e.g. outputs/mbcf/<run>), a task run or its eval folder "
        "(e.g. outputs/sod/train/<run>) or a compare folder (tables.md, grid.json, e.g. "
        "outputs/compare/quick)."
    )


def write_report(path: str | Path) -> Path:
    """``report.html`` beside the folder's files (written atomically); returns its path."""
    path = Path(path).expanduser()
    return page_of(path).write(path / "report.html")
