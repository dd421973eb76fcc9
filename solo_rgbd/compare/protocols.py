"""The protocols beyond the frozen decoder, as compare reports them.

- ``probe``: per-modality dense linear probes (a 1x1 conv on each frozen encoder alone); a cell
  stores ``{dataset: {modality: scores}}`` under :data:`PROBES`.
- ``finetune``: the task trained end to end (encoders unfrozen) with a share of the labels;
  a cell stores ``{fraction: {dataset: {subset: scores}}}`` under :data:`FINETUNE`, and the
  report draws label-efficiency curves (headline metric vs. label fraction, one line per row).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from solo_rgbd.evaluation.report import Report
from solo_rgbd.utils.atomic import atomic_path

#: a cell's per-modality linear probe scores, beside its datasets: {dataset: {modality: scores}}
PROBES = "_probes"
#: a cell's fine-tuning scores per label fraction: {"0.1": {dataset: {subset: scores}}}
FINETUNE = "_finetune"


def aggregate_probes(per_seed: list[dict]) -> dict:
    """{dataset: {modality: {metric, metric_std}}} over the seeds that ran probes."""
    probes = [s[PROBES] for s in per_seed if PROBES in s]
    out: dict = {}
    for dataset, modalities in (probes[0] if probes else {}).items():
        for modality, scores in modalities.items():
            cell = {}
            for key in scores:
                values = np.array([p[dataset][modality][key] for p in probes])
                cell[key] = float(values.mean())
                cell[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
            out.setdefault(dataset, {})[modality] = cell
    return out


def probe_table(probes: dict[str, dict], report: Report) -> str:
    """Rows x (dataset, modality): what each encoder learned on its own (the metrics the
    probes report, e.g. maxF and MAE for SOD)."""
    first = next(c for ds in probes.values() for ms in ds.values() for c in ms.values())
    metrics = [m for m in report.metrics if m[0] in first]
    lines = [
        "| Row | Dataset | Encoder | " + " | ".join(label for _, label, _ in metrics) + " |",
        "| --- | --- | --- | " + " | ".join("---" for _ in metrics) + " |",
    ]
    for row, datasets in probes.items():
        for dataset, modalities in datasets.items():
            for modality, c in modalities.items():
                cells = [f"{c[k]:.3f} ± {c[f'{k}_std']:.3f}" for k, _, _ in metrics]
                lines.append(f"| {row} | {dataset} | {modality} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def aggregate_finetune(
    per_seed: list[dict], aggregate: Callable[[list[dict], Report], dict], report: Report
) -> dict:
    """{fraction: {dataset: {subset: {metric, metric_std}}}} over the seeds that fine-tuned."""
    runs = [s[FINETUNE] for s in per_seed if FINETUNE in s]
    if not runs:
        return {}
    fractions = sorted(runs[0], key=float)
    return {f: aggregate([r[f] for r in runs if f in r], report) for f in fractions}


def finetune_section(finetune: dict[str, dict], out: Path, report: Report) -> str:
    """Markdown: rows x label fractions of the headline metric (every test set, 'all'), and
    the curves as ``finetune_<metric>.png``."""
    key = report.headline
    fractions = sorted({f for r in finetune.values() for f in r}, key=float)
    datasets = list(next(iter(next(iter(finetune.values())).values())))
    lines = [
        f"## Fine-tuning with few labels (encoders unfrozen; {report.info(key)[1]})\n",
        "| Row | Dataset | " + " | ".join(f"{float(f):.0%} labels" for f in fractions) + " |",
        "| --- | --- | " + " | ".join("---" for _ in fractions) + " |",
    ]
    for row, per_fraction in finetune.items():
        for dataset in datasets:
            cells = []
            for f in fractions:
                c = per_fraction.get(f, {}).get(dataset, {}).get("all")
                cells.append(f"{c[key]:.3f} ± {c[f'{key}_std']:.3f}" if c else "-")
            lines.append(f"| {row} | {dataset} | " + " | ".join(cells) + " |")
    plot_label_curves(finetune, key, fractions, out / f"finetune_{key}.png")
    return "\n".join(lines) + "\n"


def plot_label_curves(finetune: dict, key: str, fractions: list[str], path: Path) -> Path:
    """``key`` vs. label fraction (log x), one line per row, error bars over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    x = [float(f) for f in fractions]
    for row, per_fraction in finetune.items():
        cells = [next(iter(per_fraction.get(f, {}).values()), {}).get("all", {}) for f in fractions]
        y = [c.get(key, np.nan) for c in cells]
        err = [c.get(f"{key}_std", 0.0) for c in cells]
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=row)
    ax.set_xscale("log")
    ax.set_xticks(x, [f"{v:.0%}" for v in x])
    ax.set_xlabel("labelled training pairs")
    ax.set_ylabel(key)
    ax.legend(fontsize=7)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


#: pretraining diagnostics read from each cell's metrics.csv (the last epoch's mean); the
#: paper's balance shows in the gradient norms per modality and the fusion attention; the
#: batch top-1 (no stale keys, no BatchNorm leak) says whether the objectives were learned
DIAGNOSTICS = (
    ("grad_norm_rgb_encoder", "‖∇‖ RGB enc."),
    ("grad_norm_depth_encoder", "‖∇‖ depth enc."),
    ("grad_norm_ratio", "‖∇‖ RGB / depth enc."),  # of the two means above (issue 45)
    ("acc_batch_rgb", "batch top-1 RGB"),
    ("acc_batch_depth", "batch top-1 depth"),
    ("acc_batch_inter", "batch top-1 fused"),
    ("acc_rgb", "queue top-1 RGB"),
    ("acc_depth", "queue top-1 depth"),
    ("attention_entropy_rgb", "attn. entropy RGB"),
    ("attention_entropy_depth", "attn. entropy depth"),
    ("rgb_masked_attention_mass", "masked RGB attn."),
    # issue 31: what the mask is meant to change, and what the mask is
    ("depth_reliance_share", "depth reliance share"),
    ("reliance_depth_shuffle", "reliance depth (shuffle)"),
    ("reliance_rgb_shuffle", "reliance RGB (shuffle)"),
    ("reliance_depth_zero", "reliance depth (zero)"),
    ("reliance_rgb_zero", "reliance RGB (zero)"),
    ("mask_jaccard_samples", "mask overlap, samples"),
    ("mask_jaccard_query_key", "mask overlap, q/k"),
    ("mask_always_share", "channels masked ≥95 %"),
    ("attention_top_half_mass_rgb", "RGB attn. top-half mass"),
    ("attention_logit_std_rgb", "RGB attn. logit std"),
    # issue 45: encoder-level balancing (method_kwargs.balance)
    ("balance_coef_rgb", "OGM coef. RGB"),
    ("balance_coef_depth", "OGM coef. depth"),
    ("contribution_rgb", "fused score lost, RGB moved"),
    ("contribution_depth", "fused score lost, depth moved"),
)


def cell_diagnostics(cell: Path) -> dict[str, float]:
    """The last epoch's mean of each :data:`DIAGNOSTICS` column of a cell's pretraining run
    ({} for rows without pretraining)."""
    import csv

    files = sorted((cell / "pretrain").glob("*/*/logs/metrics.csv"))
    if not files:
        return {}
    with open(files[0], newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("epoch")]
    if not rows:
        return {}
    last = [r for r in rows if r["epoch"] == rows[-1]["epoch"]]
    out = {}
    for key, _ in DIAGNOSTICS:
        values = [float(r[key]) for r in last if r.get(key) not in (None, "", "nan")]
        if values:
            out[key] = float(np.mean(values))
    rgb, depth = out.get("grad_norm_rgb_encoder"), out.get("grad_norm_depth_encoder")
    if rgb is not None and depth:
        out["grad_norm_ratio"] = rgb / depth
    return out


def diagnostics_section(per_row: dict[str, list[dict[str, float]]]) -> str:
    """Markdown: pretrained rows x diagnostics, mean ± std over seeds."""
    rows = {name: seeds for name, seeds in per_row.items() if any(seeds)}
    if not rows:
        return ""
    keys = [
        (k, label) for k, label in DIAGNOSTICS if any(k in s for ss in rows.values() for s in ss)
    ]
    lines = [
        "## Pretraining diagnostics (last epoch; the balance the probes measure downstream)\n",
        "| Row | " + " | ".join(label for _, label in keys) + " |",
        "| --- | " + " | ".join("---" for _ in keys) + " |",
    ]
    for name, seeds in rows.items():
        cells = []
        for key, _ in keys:
            values = np.array([s[key] for s in seeds if key in s])
            std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
            cells.append(f"{values.mean():.3g} ± {std:.2g}" if len(values) else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
