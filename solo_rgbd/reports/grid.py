"""The report of a ``solo-rgbd compare`` folder.

Every table of ``tables.md`` as a sortable HTML table with the same numbers (mean ± std over
seeds, the best value in bold), the Supervised - Random verdict set apart, bar charts with
error bars, label-efficiency curves, the pretraining curves of every row overlaid, and one
row of predictions per method on the same test images. Failed or missing cells are named.

What the grid is made of comes from ``grid.json`` (written by compare: rows, their cell
folders and states, the task's bar metrics and headline).
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from solo_rgbd.evaluation import artefacts
from solo_rgbd.reports.page import Page, image, image_grid, rounded
from solo_rgbd.reports.run import read_json, read_metrics, read_text
from solo_rgbd.reports.task import read_picture

GRID = "grid.json"
#: pretraining columns overlaid for every row (those a row logged)
CURVES = (
    ("loss", "Pretraining loss"),
    ("acc_batch_rgb", "In-batch InfoNCE top-1, RGB"),
    ("acc_batch_depth", "In-batch InfoNCE top-1, depth"),
    ("acc_batch_inter", "In-batch InfoNCE top-1, fused"),
    ("grad_norm_rgb_encoder", "Gradient norm reaching the RGB encoder"),
    ("grad_norm_depth_encoder", "Gradient norm reaching the depth encoder"),
    ("depth_reliance_share", "Depth's share of the fused representation's reliance (shuffle)"),
    ("mask_jaccard_samples", "Overlap of the masked RGB channels across a batch's samples"),
)

LOG_SCALE = {"loss", "grad_norm_rgb_encoder", "grad_norm_depth_encoder"}


def is_grid(path: Path) -> bool:
    return (path / GRID).is_file() or (path / "tables.md").is_file()


def _anchor(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:60] or "section"


def _cell_html(text: str) -> str:
    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html.escape(text.strip()))


def _md_table(lines: list[str]) -> str:
    """A markdown table (header, separator, rows) as a sortable HTML table, cell text kept."""

    def cells(line: str) -> list[str]:
        return [c for c in line.strip().strip("|").split("|")]

    head = "".join(f"<th>{_cell_html(c)}</th>" for c in cells(lines[0]))
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell_html(c)}</td>" for c in cells(line)) + "</tr>"
        for line in lines[2:]
    )
    return f'<table class="sortable md"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def markdown_sections(text: str) -> tuple[str, list[tuple[str, str]]]:
    """``tables.md`` -> (preamble html, [(title, html)]): tables, bullets and paragraphs."""
    sections: list[tuple[str, list[str]]] = [("", [])]
    for line in text.splitlines():
        if line.startswith("## "):
            sections.append((line[3:].strip(), []))
        elif not line.startswith("# "):
            sections[-1][1].append(line)
    out = []
    for title, lines in sections:
        parts, i = [], 0
        while i < len(lines):
            if lines[i].lstrip().startswith("|"):
                j = i
                while j < len(lines) and lines[j].lstrip().startswith("|"):
                    j += 1
                parts.append(_md_table(lines[i:j]))
                i = j
                continue
            line = lines[i].strip()
            if line.startswith("- "):
                parts.append(f"<li>{_cell_html(line[2:])}</li>")
            elif line:
                parts.append(f"<p>{_cell_html(line)}</p>")
            i += 1
        body = re.sub(r"((?:<li>.*?</li>)+)", r"<ul>\1</ul>", "".join(parts))
        if title.startswith("Can this benchmark"):
            body = f'<div class="note">{body}</div>'
        out.append((title, body))
    return out[0][1], out[1:]


def _errors(cells: list[dict], key: str) -> dict:
    """Plotly error bars: the std over seeds."""
    return {"type": "data", "array": rounded([c.get(f"{key}_std", 0.0) for c in cells])}


def _bars(page: Page, results: dict, metric: str) -> str:
    import plotly.graph_objects as go

    fig = go.Figure()
    keys = []
    for datasets in results.values():
        for dataset, subsets in datasets.items():
            keys += [(dataset, s) for s in subsets if (dataset, s) not in keys]
    rows = list(results)
    for dataset, subset in keys:
        cells = [results[r].get(dataset, {}).get(subset, {}) for r in rows]
        fig.add_trace(
            go.Bar(
                x=rows,
                y=rounded([c.get(metric, float("nan")) for c in cells]),
                error_y=_errors(cells, metric),
                name=dataset if subset == "all" else f"{dataset} ({subset})",
            )
        )
    fig.update_layout(
        barmode="group", height=420, yaxis_title=metric, margin={"t": 40}, title_text=metric
    )
    return page.figure(fig)


def _label_curves(page: Page, finetune: dict, key: str) -> str:
    import plotly.graph_objects as go

    fig = go.Figure()
    for row, per_fraction in finetune.items():
        fractions = sorted(per_fraction, key=float)
        datasets = list(next(iter(per_fraction.values()), {}))
        for dataset in datasets:
            cells = [per_fraction[f].get(dataset, {}).get("all", {}) for f in fractions]
            fig.add_trace(
                go.Scatter(
                    x=[float(f) for f in fractions],
                    y=rounded([c.get(key, float("nan")) for c in cells]),
                    error_y=_errors(cells, key),
                    name=row if len(datasets) == 1 else f"{row}, {dataset}",
                    mode="lines+markers",
                )
            )
    fig.update_layout(
        xaxis_type="log",
        xaxis_title="share of labelled training pairs",
        yaxis_title=key,
        height=420,
        margin={"t": 30},
    )
    return page.figure(fig)


def _pretrain_curves(page: Page, out: Path, grid: dict) -> list[tuple[str, str]]:
    import plotly.graph_objects as go

    runs = []
    for row in grid["rows"]:
        for seed in row["seeds"]:
            files = sorted((out / row["cells"][str(seed)] / "pretrain").glob("*/*"))
            for run in files[:1]:
                runs.append((f"{row['name']} (seed {seed})", row["name"], read_metrics(run, page)))
    figures = []
    for column, title in CURVES:
        fig = go.Figure()
        for label, group, rows in runs:
            pts = page.thin([(r["step"], r[column]) for r in rows if column in r])
            if pts:
                fig.add_trace(
                    go.Scatter(
                        x=rounded([p[0] for p in pts]),
                        y=rounded([p[1] for p in pts]),
                        name=label,
                        legendgroup=group,
                        mode="lines",
                    )
                )
        if fig.data:
            fig.update_layout(height=420, xaxis_title="step", yaxis_title=column, margin={"t": 30})
            values = [y for t in fig.data for y in t.y if y is not None]
            if column in LOG_SCALE and values and min(values) > 0:  # scales differ by orders
                fig.update_yaxes(type="log")
            figures.append((title, page.figure(fig)))
    return figures


def _qualitative(page: Page, out: Path, grid: dict) -> str | None:
    """One row of predictions per method on the same images (the first cell's fixed images,
    or its best / median / worst), above the RGB, depth and GT rows."""
    cells = [(r["name"], out / r["cells"][str(r["seeds"][0])] / "eval") for r in grid["rows"]]
    cells = [(name, e) for name, e in cells if (e / artefacts.QUALITATIVE).is_dir()]
    if not cells:
        return None
    folder = next(iter(sorted((cells[0][1] / artefacts.QUALITATIVE).glob("*/index.json"))), None)
    if folder is None:
        return None
    index = read_json(folder, page, "the example images' index") or {}
    dataset, folder = folder.parent.name, folder.parent
    stems = list(index.get("fixed") or index.get("ranked", {}).values())[:6]
    rows = []
    gts = [read_picture(folder, s, "gt", page) for s in stems]
    for kind, label in (("rgb", "RGB"), ("depth", "depth")):
        rows.append((label, [_img(read_picture(folder, s, kind, page), s) for s in stems]))
    rows.append(("GT", [_img(gt, s) for gt, s in zip(gts, stems, strict=True)]))
    for name, eval_dir in cells:
        preds = eval_dir / "predictions" / dataset
        shown = [_pred(preds, s, gt, page) for s, gt in zip(stems, gts, strict=True)]
        rows.append((name, [_img(p, s) for p, s in zip(shown, stems, strict=True)]))
    return f"<p>test set {html.escape(dataset)}</p>" + image_grid(stems, rows)


def _pred(preds: Path, stem: str, gt, page: Page):
    """The saved prediction (GT resolution) at the size of the example's GT picture."""
    import numpy as np
    from PIL import Image

    img = page.image(preds / f"{stem}.png", "L")
    if img is None:
        return None
    if gt is not None:
        img = img.resize(gt.shape[::-1], Image.BILINEAR)
    return np.asarray(img)


def _img(array, alt: str) -> str:
    return image(array, alt, width=80) if array is not None else "missing"


def _failed_cells(out: Path, grid: dict, page: Page) -> None:
    for row in grid.get("rows", []):
        for seed, cell in row["cells"].items():
            failed, done = out / cell / "failed.json", out / cell / "done.json"
            if failed.is_file():
                error = (read_json(failed, page, "failure record") or {}).get("error", "?")
                page.missing.append(f"{row['name']} (seed {seed}) failed: {error} ({failed})")
            elif not done.is_file():
                page.missing.append(f"{row['name']} (seed {seed}): not run yet ({out / cell})")


def grid_page(out: Path) -> Page:
    page = Page(f"compare {out.name}", root=out)
    grid = read_json(out / GRID, page, "the grid's rows and cells (an older version?)") or {}
    page.title = f"compare {grid.get('name', out.name)}"
    _failed_cells(out, grid, page)
    tables = out / "tables.md"
    if tables.is_file() and (text := read_text(tables, page)) is not None:
        preamble, sections = markdown_sections(text)
        page.section("summary", "Summary", preamble)
        for title, body in sections:
            page.section(_anchor(title), title, body)
    else:
        page.missing.append(f"{tables}: missing (no cell finished?)")
    results = read_json(out / "all_rows.json", page, "scores", optional=True)
    if results:
        charts = "".join(_bars(page, results, m) for m in grid.get("bars", []))
        if charts:
            page.section("bars", "Bar charts (mean ± std over seeds)", charts)
    finetune = read_json(out / "finetune.json", page, "fine-tuning scores", optional=True)
    with page.part("the label-efficiency curves"):
        if finetune and grid.get("headline"):
            curves = _label_curves(page, finetune, grid["headline"])
            page.section("label-efficiency", "Label efficiency (fine-tuning)", curves)
    if grid.get("rows"):
        with page.part("the pretraining curves"):
            curves = _pretrain_curves(page, out, grid)
            if curves:
                body = "".join(f"<h3>{html.escape(t)}</h3>{div}" for t, div in curves)
                page.section("pretraining", "Pretraining curves, every row", body)
        with page.part("the qualitative images"):
            images = _qualitative(page, out, grid)
            if images:
                page.section("qualitative", "Predictions of every row on the same images", images)
    return page
