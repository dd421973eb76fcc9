"""The report of a pretraining run folder (``<output_dir>/<method>/<run>``).

Curves over steps (the loss terms, InfoNCE top-1 per modality and fused, lr, momentum tau),
the modality-balance diagnostics (gradient norm per encoder, attention entropy, masked RGB
attention mass), the online probe's scores, each with the stage switch marked; the composed
config, how the run was started and where it ran (``run.json``: command line, versions,
device, wall time per session) and the export's sha256. A truncated or empty ``metrics.csv``
or a missing export still gives a page, which names what is missing.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import math
import os
from pathlib import Path

from solo_rgbd.errors import ConfigError
from solo_rgbd.reports.page import Page, pre, rounded, table

#: (anchor, title, column prefixes) of the curve panels
PANELS = (
    ("losses", "Loss terms", ("loss",)),
    ("top1", "InfoNCE top-1: in-batch (acc_batch_*) and against the queue (acc_*)", ("acc",)),
    ("schedule", "Learning rate and momentum tau", ("lr", "momentum_tau")),
    ("grad", "Gradient norm reaching each encoder", ("grad_norm",)),
    (
        "attention",
        "Fusion attention: entropy, top-half mass, logit std, gate, masked RGB mass",
        ("attention_", "rgb_masked"),
    ),  # fmt: skip
    (
        "reliance",
        "Modality reliance of the fused representation (top-1 lost without one input)",
        ("reliance_", "depth_reliance"),
    ),  # fmt: skip
    (
        "mask",
        "The mask: overlap across samples and query/key, channels masked almost always",
        ("mask_",),
    ),  # fmt: skip
    ("probe", "Online probe", ("probe/", "frozen_probe/")),
)


def is_pretrain_run(path: Path) -> bool:
    """A run folder whose config names a pretraining ``method`` (a top-level key)."""
    config = path / "config.yaml"
    return config.is_file() and "\nmethod:" in "\n" + config.read_text(errors="replace")


def read_metrics(path: Path, page: Page) -> list[dict[str, float]]:
    """The numeric rows of ``metrics.csv``; damaged rows are skipped and named on the page."""
    file = path / "logs" / "metrics.csv"
    if not page.readable(file):
        return []
    if not file.is_file() or file.stat().st_size == 0:
        page.missing.append(f"{file}: missing or empty, so there are no curves")
        return []
    rows, bad = [], 0
    with open(file, newline="", errors="replace") as f:
        reader = csv.DictReader(f)
        try:
            for raw in reader:
                row = _numeric(raw)
                bad += row is None
                if row is not None and "step" in row:
                    rows.append(row)
        except csv.Error as exc:  # a field over the csv module's limit, a NUL byte
            page.missing.append(f"{file}: unreadable from line {reader.line_num} on ({exc})")
    if bad:
        page.missing.append(f"{file}: {bad} damaged row(s) skipped (a truncated write?)")
    return rows


def _numeric(raw: dict) -> dict[str, float] | None:
    """A metrics row as numbers; None for a damaged row (too many or too few fields, text)."""
    if None in raw or None in raw.values():
        return None
    try:
        return {k: float(v) for k, v in raw.items() if k and v not in ("", None)}
    except (TypeError, ValueError):
        return None


def read_json(file: Path, page: Page, what: str, optional: bool = False) -> dict | None:
    """A JSON object of the folder; missing (unless ``optional``), outside the folder or
    damaged (not UTF-8, not JSON, not an object): named on the page and None."""
    if optional and not os.path.lexists(file):
        return None
    if not page.readable(file):
        return None
    try:
        value = json.loads(file.read_text())
    except (OSError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        page.missing.append(f"{file}: missing or damaged ({what}; {type(exc).__name__})")
        return None
    if not isinstance(value, dict):
        page.missing.append(f"{file}: damaged ({what}; not a JSON object)")
        return None
    return value


def read_text(file: Path, page: Page) -> str | None:
    """A text file of the folder (undecodable bytes replaced), or None if outside it."""
    if not page.readable(file):
        return None
    try:
        return file.read_text(errors="replace")
    except OSError as exc:
        page.missing.append(f"{file}: unreadable ({exc.strerror})")
        return None


def _stage_switch(rows: list[dict[str, float]]) -> float | None:
    """The step the second stage starts at (logged by the method; runs of earlier versions:
    the first row of stage 2)."""
    for row in rows:
        if "stage_switch_step" in row:
            return row["stage_switch_step"]
    for row in rows:
        if row.get("stage", 1.0) >= 2.0:
            return row["step"]
    return None


def panel(page: Page, rows: list[dict[str, float]], prefixes: tuple, switch: float | None = None):
    """A figure of every column starting with one of ``prefixes`` against the step."""
    import plotly.graph_objects as go

    columns = sorted(k for k in set().union(*rows) if k.startswith(prefixes))
    if not columns:
        return None
    fig = go.Figure()
    for col in columns:
        pts = page.thin([(r["step"], r[col]) for r in rows if col in r and math.isfinite(r[col])])
        x, y = rounded([p[0] for p in pts]), rounded([p[1] for p in pts])
        mode = "lines+markers" if len(x) < 3 else "lines"
        fig.add_trace(go.Scatter(x=x, y=y, name=col, mode=mode))
    if switch is not None:
        fig.add_vline(x=switch, line_dash="dash", annotation_text="stage 2")
    fig.update_layout(height=360, margin={"t": 30, "b": 40}, xaxis_title="step")
    return page.figure(fig)


#: files larger than this are not hashed for the page: the manifest's sha256 is shown
HASH_LIMIT = 2 << 30


def _export(path: Path, page: Page) -> str:
    folder = path / "encoders"
    files = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.pt"))
    if not files:
        page.missing.append(f"{folder}: no exported encoders (the run did not finish?)")
        return "<p>No export.</p>"
    listed = {}
    manifest = folder / "encoders.json"
    if page.readable(manifest):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            entries = json.loads(manifest.read_text()).get("encoders") or {}
            listed = {e.get("file"): e.get("sha256") for e in entries.values()}
    rows = []
    for f in files:
        if not page.readable(f, limit=HASH_LIMIT):
            if page.inside(f) and f.is_file() and listed.get(f.name):
                rows.append([f.name, f.stat().st_size, f"{listed[f.name]} (encoders.json's)"])
            continue
        digest = hashlib.sha256()
        with open(f, "rb") as handle:
            for chunk in iter(lambda h=handle: h.read(1 << 20), b""):
                digest.update(chunk)
        rows.append([f.name, f.stat().st_size, digest.hexdigest()])
    return table(["file", "bytes", "sha256"], rows)


def run_info_section(path: Path, page: Page) -> None:
    """How the run was started and where it ran, one row per session (``run.json``)."""
    info = read_json(path / "run.json", page, "how the run was started (an older version?)")
    sessions = info.get("sessions") if isinstance(info, dict) else None
    if not isinstance(sessions, list):
        if info is not None:
            page.missing.append(f"{path / 'run.json'}: damaged (no sessions)")
        return
    rows = []
    sessions = [s for s in sessions if isinstance(s, dict)]
    for i, s in enumerate(sessions):
        if s.get("ended") is None and (i < len(sessions) - 1 or not _running(path)):
            s = {**s, "status": "ended without a record (killed?)"}
        dev = s.get("device") if isinstance(s.get("device"), dict) else {}
        device = f"{dev.get('accelerator')} {dev.get('name')} x{dev.get('world_size')}"
        wall = s.get("wall_s")
        rows.append(
            [
                s.get("started"),
                s.get("status"),
                wall if wall is not None else "-",
                device,
                dev.get("precision", "-"),
                s.get("host", "-"),
            ]
        )
    versions = sessions[-1].get("versions") if sessions else {}
    versions = versions if isinstance(versions, dict) else {}
    body = (
        f"<p>wall time, every session: {_number(info.get('wall_s_total')):.1f} s</p>"
        + table(["started", "ended as", "wall s", "device", "precision", "host"], rows)
        + "<p>command lines:</p>"
        + pre("\n".join(str(s.get("command")) for s in sessions))
        + "<p>versions (last session):</p>"
        + table(["package", "version"], sorted((str(k), v) for k, v in versions.items()))
    )
    page.section("run-info", "How the run was started and where it ran", body)


def _running(path: Path) -> bool:
    """Whether a process holds the run's lock now (the run is live)."""
    from solo_rgbd.utils.locks import RUN_LOCK_FILES, FileLock

    if not (path / RUN_LOCK_FILES[0]).is_file():
        return False
    lock = FileLock(path / RUN_LOCK_FILES[0], path / RUN_LOCK_FILES[1])
    lock.record = False  # a probe: the holder's line stays as the run wrote it
    try:
        free = lock.acquire()
    except OSError:
        return False
    if free:
        lock.release()
    return not free


def _number(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0


def config_section(path: Path, page: Page) -> None:
    file = path / "config.yaml"
    if not file.is_file():
        page.missing.append(f"{file}: missing")
    elif (text := read_text(file, page)) is not None:
        page.section("config", "Composed config", pre(text))


def pretrain_page(path: Path) -> Page:
    if not is_pretrain_run(path):
        raise ConfigError(
            f"'{path}' is not a pretraining run folder: its config.yaml names a method "
            "(e.g. outputs/mbcf/<run>); pass such a folder to 'solo-rgbd report'."
        )
    page = Page(f"Pretraining run {path.parent.name}/{path.name}", root=path)
    rows: list[dict[str, float]] = []
    with page.part("the curves"):
        rows = read_metrics(path, page)
        switch = _stage_switch(rows)
        last = rows[-1] if rows else {}
        summary = [[k, v] for k, v in sorted(last.items())]
        page.section("summary", "Last logged values", table(["metric", "value"], summary))
        for anchor, title, prefixes in PANELS:
            div = panel(page, rows, prefixes, switch) if rows else None
            if div is not None:
                page.section(anchor, title, div)
    with page.part("the export"):
        page.section("export", "Exported encoders", _export(path, page))
    with page.part("the sessions (run.json)"):
        run_info_section(path, page)
    with page.part("the config"):
        config_section(path, page)
    with page.part("encoders.json"):
        info = read_json(path / "encoders" / "encoders.json", page, "the export", optional=True)
        if info is not None:
            page.section("encoders-json", "encoders.json", pre(json.dumps(info, indent=1)))
    return page
