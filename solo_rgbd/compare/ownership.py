"""``compare`` writes only into what it made: its ``out`` folder, one cell folder per row, and
its own files there.

- ``out`` is empty (or new), or a grid that ``compare`` made: it carries :data:`MARK`, or, for a
  grid of a version before the mark, a ``grid.json`` manifest beside ``cells/``. Anything else
  is refused, so a user's folder is never written into and none of its files replaced.
- Each row gets a cell folder named by its slug; two rows whose names give the same slug are
  refused by name (they would share one cell, and one row report the other's scores).
- A table's files are named after its title: a title that would give the name of one of the
  grid's own files, or another table's, is refused.
- ``done.json``, a finished cell's scores, is a cache: it is read only as a regular file inside
  the grid, and a damaged one means the cell runs again, with one line saying so.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

from solo_rgbd.compare.cells import CellResult
from solo_rgbd.errors import ConfigError
from solo_rgbd.utils.console import say

MARK = ".solo-rgbd-grid"
#: the stems of the grid's own files (grid.json, tables.md, probes.json, finetune.json, ...)
RESERVED = ("grid", "tables", "probes", "finetune", "trackers")


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()


def claim_grid(out: Path) -> None:
    """Make ``out`` the grid's folder, or refuse it (module doc); nothing is written before."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out='{out}' is a file, not a folder; choose another out=DIR.")
    if (out / MARK).is_file():
        return
    legacy = (out / "grid.json").is_file() and (out / "cells").is_dir()
    if legacy:
        try:
            legacy = isinstance(json.loads((out / "grid.json").read_text()).get("rows"), list)
        except (OSError, ValueError, AttributeError):
            legacy = False
    if out.is_dir() and any(out.iterdir()) and not legacy:
        raise ConfigError(
            f"out='{out}' holds files and is not a grid 'solo-rgbd compare' made (it has no "
            f"{MARK}), so compare writes nothing into it. Choose a new or empty folder for "
            "out=, or the folder of an earlier compare run to continue it."
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / MARK).write_text("a grid of solo-rgbd compare: it writes only its own files here\n")


def cell_slugs(names: list[str]) -> dict[str, str]:
    """Each row's cell folder name; rows that would share one are refused by name."""
    seen: dict[str, str] = {}
    for name in names:
        key = slug(name)
        if not key:
            raise ConfigError(
                f"row name {name!r} has no letter or digit, so it gives no cell folder; name the "
                "row with letters or digits."
            )
        if key in seen:
            raise ConfigError(
                f"rows '{seen[key]}' and '{name}' would share the cell folder cells/{key} (row "
                "names are compared without case and punctuation); rename one of them."
            )
        seen[key] = name
    return {name: key for key, name in seen.items()}


def check_table_titles(titles: list[str]) -> None:
    """A table's files are ``<slug of its title>.{md,csv,json}``: never a name of the grid's
    own files, nor another table's."""
    seen: dict[str, str] = {}
    for title in titles:
        stem = slug(title.split(":")[0])
        if not stem or stem in RESERVED or stem in seen:
            clash = f"the table '{seen[stem]}'" if stem in seen else "the grid's own files"
            raise ConfigError(
                f"table title {title!r} would name its files '{stem or '(nothing)'}.*', which "
                f"is taken by {clash}; retitle the table (tables=[{{title: ..., rows: [...], "
                "metrics: [...]}}])."
            )
        seen[stem] = title


def read_done(done: Path, out: Path, what: str) -> CellResult | None:
    """A finished cell's scores from ``done.json``, or None: absent, or not to be trusted (a
    link, not a regular file, outside the grid, damaged), which one line names."""
    try:
        st = os.lstat(done)
    except FileNotFoundError:
        return None
    except OSError as exc:
        say(f"[compare] {what}: {done} unreadable ({exc.strerror}); running the cell again")
        return None
    problem = None
    if not stat.S_ISREG(st.st_mode):
        problem = "not a regular file"
    elif not done.resolve().is_relative_to(out.resolve()):
        problem = "outside the grid"
    else:
        try:
            data = json.loads(done.read_text())
            result = CellResult.from_json(data) if isinstance(data, dict) else None
            if (
                result is not None
                and result.frozen
                and all(
                    isinstance(v, dict) and all(isinstance(s, dict) for s in v.values())
                    for v in result.frozen.values()
                )
            ):
                return result
            problem = "not a cell's scores"
        except (OSError, ValueError) as exc:
            problem = f"damaged ({type(exc).__name__})"
    say(f"[compare] {what}: {done} is {problem}; running the cell again")
    return None
