"""``solo-rgbd report PATH``: which page a folder gets, written as ``PATH/report.html``."""

from __future__ import annotations

from pathlib import Path

from solo_rgbd.errors import ConfigError
from solo_rgbd.reports.page import GENERATOR, Page

#: what damaged files of the wrong shape raise deep inside a page builder
DAMAGE = (KeyError, TypeError, AttributeError, ValueError, IndexError, OSError, RecursionError)


def page_of(path: Path) -> Page:
    """The page of a compare folder, a task run or eval folder, or a pretraining run. Files of
    the wrong shape that a builder did not foresee still give a page, which names the damage."""
    from solo_rgbd.reports import grid, run, task

    kinds = [(grid.is_grid, grid.grid_page), (run.is_pretrain_run, run.pretrain_page)]
    kinds.append((lambda p: task.is_task_run(p) or task.is_eval_dir(p), task.task_page))
    for is_kind, build in kinds:
        if is_kind(path):
            try:
                return build(path)
            except DAMAGE as exc:
                page = Page(f"{path.parent.name}/{path.name} (damaged)", root=path)
                page.missing.append(
                    f"{path}: a file of this folder is damaged, so the page could not be built "
                    f"({type(exc).__name__}: {exc}); the run's own files were not changed"
                )
                return page
    raise ConfigError(
        f"'{path}' is not a run folder solo-rgbd wrote: 'solo-rgbd report' takes a pretraining "
        "run (config.yaml naming a method, e.g. outputs/mbcf/<run>), a task run or its eval folder "
        "(e.g. outputs/sod/train/<run>) or a compare folder (tables.md, grid.json, e.g. "
        "outputs/compare/quick)."
    )


def made_by_us(path: Path) -> bool:
    """A folder that solo-rgbd's own marks say it wrote: a run (the engine's ``.run.lock``), a
    compare grid (``grid.json``, or ``tables.md`` beside its ``cells/``) or an eval folder
    (its ``predictions/`` marked as solo-rgbd's)."""
    from solo_rgbd.utils.locks import RUN_LOCK_FILES

    if (path / RUN_LOCK_FILES[0]).is_file() or (path / "grid.json").is_file():
        return True
    if (path / "tables.md").is_file() and (path / "cells").is_dir():
        return True
    return (path / "results.json").is_file() and any((path / "predictions").glob(".*.solo-rgbd"))


def write_report(path: str | Path, out: str | Path | None = None) -> Path:
    """``report.html`` beside the folder's files, or ``out`` (written atomically); returns its
    path. Nothing is written into a folder that solo-rgbd did not make, and no file is
    replaced that is not a page of solo-rgbd's."""
    path = Path(path).expanduser()
    if out is None and not made_by_us(path):
        page_of(path)  # a folder of no known kind gets that error first
        raise ConfigError(
            f"'{path}' looks like a run, grid or eval folder but has none of the marks solo-rgbd "
            "leaves in the folders it writes (.run.lock of a run, grid.json of a grid, the "
            "marked predictions/ of an eval), so 'solo-rgbd report' writes nothing into it. "
            "Write the page elsewhere with --out PAGE.html."
        )
    target = Path(out).expanduser() if out is not None else path / "report.html"
    if target.is_dir():
        target = target / "report.html"
    if target.exists() and not is_our_page(target):
        raise ConfigError(
            f"'{target}' exists and is not a page solo-rgbd wrote, so it is not replaced; move "
            "it away or pass another --out."
        )
    return page_of(path).write(target)


def is_our_page(file: Path) -> bool:
    try:
        with open(file, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    # pages of versions before the generator mark began exactly so
    return GENERATOR.encode() in head or head.startswith(OLD_PAGE_START)


OLD_PAGE_START = b"<!DOCTYPE html><html><head><meta charset='utf-8'><title>"
