"""Result tables shaped like the paper's Table 1 (markdown, CSV, JSON) and plots (PNG)."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from solo_rgbd.utils.atomic import atomic_path, atomic_write_text

# (key, label as in the paper, higher is better)
Metric = tuple[str, str, bool]
TABLE_METRICS: list[Metric] = [
    ("maxF", "maxF ↑", True),
    ("maxE", "E^max ↑", True),
    ("MAE", "MAE ↓", False),
    ("S", "S ↑", True),
    ("wF", "wF ↑", True),
    ("meanF", "meanF ↑", True),
    ("adpF", "adpF ↑", True),
    ("meanE", "meanE ↑", True),
    ("adpE", "adpE ↑", True),
]


@dataclass(frozen=True)
class Report:
    """How a task's scores are tabulated: every metric, the short table's, and the headline
    metric (the one the Supervised - Random separation test and the probe tables use)."""

    metrics: tuple[Metric, ...]
    main: tuple[str, ...]
    headline: str
    bars: tuple[str, ...]

    def info(self, key: str) -> Metric:
        return next(m for m in self.metrics if m[0] == key)

    def higher_is_better(self, key: str) -> bool:
        return self.info(key)[2]


def rows_of(results: dict[str, dict[str, dict[str, dict]]], report: Report) -> list[dict]:
    """results[model][dataset][subset] = scores -> long rows."""
    rows = []
    for model, datasets in results.items():
        for dataset, subsets in datasets.items():
            for subset, scores in subsets.items():
                for key, _, _ in report.metrics:
                    rows.append(
                        {
                            "model": model,
                            "dataset": dataset,
                            "subset": subset,
                            "metric": key,
                            "value": scores[key],
                            "n": scores["n"],
                        }
                    )
    return rows


def _cell(value: float | None, std: float | None, best: float | None) -> str:
    if value is None:
        return "-"
    text = f"{value:.3f}" if not std else f"{value:.3f} ± {std:.3f}"
    return f"**{text}**" if value == best else text


def paper_table(
    results: dict[str, dict[str, dict[str, dict]]],
    metrics: list[Metric] | None = None,
    *,
    report: Report,
) -> str:
    """Markdown: | Dataset | Metrics | model columns |, one row per (dataset[, subset], metric)."""
    metrics = metrics or [report.info(k) for k in report.main]
    models = list(results)
    datasets: list[tuple[str, str]] = []
    for model in models:
        for dataset, subsets in results[model].items():
            for subset in subsets:
                if (dataset, subset) not in datasets:
                    datasets.append((dataset, subset))
    lines = [
        "| Dataset | Metrics | " + " | ".join(models) + " |",
        "| --- | --- | " + " | ".join("---" for _ in models) + " |",
    ]
    for dataset, subset in datasets:
        label = dataset if subset == "all" else f"{dataset} ({subset})"
        for i, (key, name, higher) in enumerate(metrics):
            values = [results[m].get(dataset, {}).get(subset, {}).get(key) for m in models]
            present = [v for v in values if v is not None]
            best = (max if higher else min)(present) if len(present) > 1 else None
            cells = [
                _cell(v, results[m].get(dataset, {}).get(subset, {}).get(f"{key}_std"), best)
                for v, m in zip(values, models, strict=True)
            ]
            lines.append(f"| {label if i == 0 else ''} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_tables(
    results: dict, out_dir: Path, stem: str = "results", *, report: Report
) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / f"{stem}.md"
    main = paper_table(results, report=report)
    every = paper_table(results, list(report.metrics), report=report)
    atomic_write_text(main + "\n\nAll metrics:\n\n" + every + "\n", md)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["model", "dataset", "subset", "metric", "value", "n"])
    writer.writeheader()
    writer.writerows(rows_of(results, report))
    atomic_write_text(buf.getvalue(), out_dir / f"{stem}.csv")
    slim = {
        m: {
            d: {
                s: {k: v for k, v in sc.items() if not isinstance(v, list)}
                for s, sc in subs.items()
            }
            for d, subs in ds.items()
        }
        for m, ds in results.items()
    }
    atomic_write_text(json.dumps(slim, indent=2), out_dir / f"{stem}.json")
    return {"md": md, "csv": out_dir / f"{stem}.csv", "json": out_dir / f"{stem}.json"}


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def plot_curves(scores: dict[str, dict], out_dir: Path) -> list[Path]:
    """PR curves and F-measure-vs-threshold curves, one line per dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    fig, ax = plt.subplots(figsize=(5, 4))
    for name, s in scores.items():
        ax.plot(s["pr_r"], s["pr_p"], label=name)
    ax.set(
        xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title="Precision-recall"
    )
    ax.legend(fontsize=8)
    _save(fig, out_dir / "pr_curves.png")
    out.append(out_dir / "pr_curves.png")
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 4))
    for name, s in scores.items():
        thresholds = np.arange(255, -1, -1)  # pysodmetrics' curves run from 255 down to 0
        ax.plot(thresholds, s["f_curve"], label=name)
    ax.set(
        xlabel="threshold",
        ylabel="F-measure (beta^2 = 0.3)",
        xlim=(0, 255),
        ylim=(0, 1.02),
        title="F-measure vs threshold",
    )
    ax.legend(fontsize=8)
    _save(fig, out_dir / "f_threshold.png")
    out.append(out_dir / "f_threshold.png")
    plt.close(fig)
    return out


def plot_qualitative(rows: list[tuple[np.ndarray, ...]], path: Path) -> Path:
    """A grid, one row per image: RGB | depth | GT | prediction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 4, figsize=(8, 2 * len(rows)), squeeze=False)
    for r, images in enumerate(rows):
        for c, (img, title) in enumerate(
            zip(images, ("RGB", "depth", "GT", "prediction"), strict=True)
        ):
            axes[r, c].imshow(img, cmap=None if img.ndim == 3 else "gray", vmin=0, vmax=255)
            axes[r, c].axis("off")
            if r == 0:
                axes[r, c].set_title(title)
    _save(fig, path)
    plt.close(fig)
    return path


def plot_bars(results: dict[str, dict], metric: str, path: Path) -> Path:
    """Grouped bars: one group per row (model), one bar per dataset / subset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(results)
    keys = []
    for m in models:
        for dataset, subsets in results[m].items():
            for subset in subsets:
                if (dataset, subset) not in keys:
                    keys.append((dataset, subset))
    width = 0.8 / max(1, len(keys))
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(models) + 2), 4))
    x = np.arange(len(models))
    for i, (dataset, subset) in enumerate(keys):
        vals = [results[m].get(dataset, {}).get(subset, {}).get(metric, np.nan) for m in models]
        errs = [
            results[m].get(dataset, {}).get(subset, {}).get(f"{metric}_std", 0.0) for m in models
        ]
        label = dataset if subset == "all" else f"{dataset} ({subset})"
        ax.bar(x + i * width - 0.4 + width / 2, vals, width, yerr=errs, label=label)
    ax.set_xticks(x, models, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(metric)
    ax.legend(fontsize=7)
    _save(fig, path)
    plt.close(fig)
    return path
