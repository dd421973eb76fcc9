"""``solo-rgbd report PATH`` and the report the other commands write when they finish."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

from solo_rgbd.errors import SoloRGBDError


def run_report_command(args: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="solo-rgbd report",
        description="Write PATH/report.html: one self-contained page (no network) of a "
        "pretraining run, a task run or its eval folder, or a compare folder.",
    )
    parser.add_argument(
        "path", help="e.g. outputs/mbcf/<run>, outputs/sod/train/<run>, outputs/compare/quick"
    )
    parser.add_argument(
        "--out",
        default=None,
        help="write the page here (a file, or a folder for report.html) instead of "
        "PATH/report.html; needed for folders solo-rgbd did not write",
    )
    from solo_rgbd.reports.build import write_report

    ns = parser.parse_args(list(args))
    print(f"report: {write_report(ns.path, ns.out)}")
    return 0


def report_at_end(cfg: DictConfig, path: Path) -> Path | None:
    """``path/report.html`` when a command finishes (``report=false``: none; rank 0 only). The
    run itself succeeded, so a report that fails is a warning naming the command to retry."""
    from solo_rgbd.engine.run import env_rank

    if not bool(cfg.get("report", True)) or env_rank() != 0:
        return None
    from solo_rgbd.reports.build import write_report

    try:
        page = write_report(path)
    except (SoloRGBDError, OSError, ValueError) as exc:
        print(
            f"warning: the report of '{path}' was not written ({type(exc).__name__}: {exc}); "
            f"the run's files are complete. Retry with: solo-rgbd report {path}",
            file=sys.stderr,
        )
        return None
    print(f"report:     {page}")
    return page
