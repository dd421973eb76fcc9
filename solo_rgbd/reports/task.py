"""The report of a task run (``solo-rgbd sod train``, then ``sod eval``) or of an eval folder.

The scores per test set and subset (``results.json``), the PR and F-measure curves
(``curves.json``), the best, median and worst images (RGB, depth, GT, prediction), the training
curves, how the run was started and its config. Whatever is missing (no eval yet, a damaged
file) is named on the page.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from solo_rgbd.evaluation import artefacts
from solo_rgbd.reports.page import Page, image, image_grid, pre, rounded, table
from solo_rgbd.reports.run import (
    config_section,
    is_pretrain_run,
    panel,
    read_json,
    read_metrics,
    read_text,
    run_info_section,
)

TASK_PANELS = (
    ("train-curves", "Training loss", ("loss", "train/")),
    ("val-curves", "Validation scores", ("val/",)),
    ("lr-curves", "Learning rate", ("lr",)),
)


def is_eval_dir(path: Path) -> bool:
    return (path / "results.json").is_file()


def is_task_run(path: Path) -> bool:
    """A task's run folder: a config.yaml without a pretraining ``method``."""
    return (path / "config.yaml").is_file() and not is_pretrain_run(path)


def scores_section(results: dict, page: Page) -> None:
    """One row per (model, test set, subset): n and every scalar metric."""
    keys: list[str] = []
    rows = []
    for model, datasets in results.items():
        for dataset, subsets in datasets.items():
            for subset, scores in subsets.items():
                keys = keys or [k for k, v in scores.items() if k != "n" and not k.endswith("_std")]
                rows.append(
                    [model, dataset, subset, scores.get("n", "-")]
                    + [scores.get(k, "-") for k in keys]
                )
    page.section(
        "scores",
        "Scores per test set and subset",
        table(["model", "test set", "subset", "n", *keys], rows),
    )


def curves_section(curves: dict, page: Page) -> None:
    import plotly.graph_objects as go

    pr, f = go.Figure(), go.Figure()
    thresholds = list(range(255, -1, -1))  # pysodmetrics' order
    for dataset, subsets in curves.items():
        for subset, c in subsets.items():
            label = dataset if subset == "all" else f"{dataset} ({subset})"
            pr.add_trace(go.Scatter(x=rounded(c["pr_r"]), y=rounded(c["pr_p"]), name=label))
            f.add_trace(go.Scatter(x=thresholds, y=rounded(c["f_curve"]), name=label))
    pr.update_layout(
        xaxis_title="recall",
        yaxis_title="precision",
        height=400,
        xaxis_range=[0, 1],
        yaxis_range=[0, 1.02],
    )
    f.update_layout(
        xaxis_title="threshold",
        yaxis_title="F-measure (beta^2 = 0.3)",
        height=400,
        yaxis_range=[0, 1.02],
    )
    page.section("pr", "Precision-recall", page.figure(pr))
    page.section("f-threshold", "F-measure against the threshold", page.figure(f))


def read_picture(folder: Path, stem: str, kind: str, page: Page) -> np.ndarray | None:

    img = page.image(folder / f"{stem}.{kind}.png", "RGB" if kind == "rgb" else "L")
    return np.asarray(img) if img is not None else None


def _cell(array: np.ndarray | None, alt: str) -> str:
    return image(array, alt) if array is not None else "missing"


def qualitative_section(eval_dir: Path, page: Page) -> None:
    """Best, median and worst images of every test set: RGB | depth | GT | prediction."""
    root = eval_dir / artefacts.QUALITATIVE
    rows = []
    for index_file in sorted(root.glob("*/index.json")):
        folder, index = index_file.parent, read_json(index_file, page, "image index")
        if index is None:
            continue
        ranked = index.get("ranked")
        for rank, stem in (ranked if isinstance(ranked, dict) else {}).items():
            cells = [
                _cell(read_picture(folder, stem, kind, page), f"{stem} {kind}")
                for kind in artefacts.KINDS
            ]
            rows.append((f"{folder.name}: {rank} ({index.get('rank_by')}) {stem}", cells))
    if not rows:
        page.missing.append(f"{root}: no example images (an eval of an older version?)")
        return
    page.section(
        "qualitative",
        "Best, median and worst images",
        image_grid(["RGB", "depth", "GT", "prediction"], rows),
    )


def eval_sections(eval_dir: Path, page: Page) -> None:
    results = read_json(eval_dir / "results.json", page, "scores")
    if results:
        scores_section(results, page)
    curves = read_json(eval_dir / artefacts.CURVES, page, "PR and F curves")
    if curves:
        curves_section(curves, page)
    qualitative_section(eval_dir, page)


def task_page(path: Path) -> Page:
    """A task run folder (with its ``eval/``) or an eval folder alone."""
    if is_eval_dir(path) and not (path / "logs").is_dir():
        page = Page(f"Evaluation {path.parent.name}/{path.name}", root=path)
        eval_sections(path, page)
        return page
    page = Page(f"Task run {path.parent.name}/{path.name}", root=path)
    eval_dir = path / "eval"
    if is_eval_dir(eval_dir):
        with page.part("the evaluation"):
            eval_sections(eval_dir, page)
    else:
        page.missing.append(
            f"{eval_dir}: not evaluated yet; run 'solo-rgbd sod eval ckpt={path}' for scores, "
            "curves and images"
        )
    summary = path / "summary.json"
    if summary.is_file() and (text := read_text(summary, page)) is not None:
        page.section("summary", "Training summary", pre(text))
    with page.part("the curves"):
        rows = read_metrics(path, page)
        for anchor, title, prefixes in TASK_PANELS:
            div = panel(page, rows, prefixes) if rows else None
            if div is not None:
                page.section(anchor, title, div)
    with page.part("the sessions (run.json)"):
        run_info_section(path, page)
    with page.part("the config"):
        config_section(path, page)
    return page
