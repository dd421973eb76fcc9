"""Paired gaps between two rows of a grid: row A minus row B, seed by seed.

Cells of the same seed share the data order, the decoder's initialisation and the test set, so
the per-seed difference removes most of what the seeds vary; its mean ± std and its sign count
("3/3": A is better on every seed) say more than two overlapping mean ± std cells. Every
quantity a cell holds is compared: the frozen protocol per dataset and subset, the probes per
encoder, fine-tuning per label fraction, each in the task's headline metric and signed so that
a positive gap means A is better.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from solo_rgbd.compare.protocols import FINETUNE, PROBES
from solo_rgbd.evaluation.report import Report


def _quantities(scores: dict, key: str) -> Iterator[tuple[str, float]]:
    """(label, value) of ``key`` for everything one cell measured."""
    for dataset, subsets in scores.items():
        if dataset in (PROBES, FINETUNE):
            continue
        for subset, s in subsets.items():
            yield f"frozen, {dataset} {subset}", s[key]
    for dataset, modalities in scores.get(PROBES, {}).items():
        for modality, s in modalities.items():
            yield f"probe {modality}, {dataset}", s[key]
    for fraction, datasets in scores.get(FINETUNE, {}).items():
        for dataset, subsets in datasets.items():
            yield f"finetune {fraction}, {dataset} all", subsets["all"][key]


def paired_gaps(by_seed: dict[str, dict[int, dict]], pairs: list[list[str]], report: Report) -> str:
    """A markdown section: for each [A, B] in ``pairs``, A - B per quantity over the seeds both
    rows finished (``by_seed``: {row: {seed: cell scores}})."""
    key = report.headline
    sign = 1.0 if report.higher_is_better(key) else -1.0
    lines = [
        f"## Paired gaps ({key}, A - B per seed; positive: A is better)\n",
        "| A - B | quantity | mean ± std | A better on | seeds |",
        "| --- | --- | --- | --- | --- |",
    ]
    for a, b in pairs:
        seeds = sorted(set(by_seed.get(a, {})) & set(by_seed.get(b, {})))
        if not seeds:
            continue
        per_quantity: dict[str, list[float]] = {}
        for seed in seeds:
            theirs = dict(_quantities(by_seed[b][seed], key))
            for label, value in _quantities(by_seed[a][seed], key):
                if label in theirs:
                    per_quantity.setdefault(label, []).append(sign * (value - theirs[label]))
        for label, gaps in per_quantity.items():
            g = np.array(gaps)
            std = float(g.std(ddof=1)) if len(g) > 1 else 0.0
            wins = int((g > 0).sum())
            lines.append(
                f"| {a} - {b} | {label} | {g.mean():+.3f} ± {std:.3f} | {wins}/{len(g)} | "
                f"{', '.join(map(str, seeds))} |"
            )
    return "\n".join(lines) + "\n" if len(lines) > 3 else ""


def diagnostic_gaps(
    by_seed: dict[str, dict[int, dict[str, float]]], pairs: list[list[str]], keys: tuple[str, ...]
) -> str:
    """A markdown section: A - B per seed of pretraining diagnostics (``keys``, e.g. the depth
    reliance share); a positive gap means A's value is higher (no better or worse implied)."""
    lines = [
        "## Paired gaps in the pretraining diagnostics (A - B per seed; last epoch's mean)\n",
        "| A - B | diagnostic | mean ± std | A higher on | seeds |",
        "| --- | --- | --- | --- | --- |",
    ]
    for a, b in pairs:
        for key in keys:
            seeds = sorted(
                s
                for s in set(by_seed.get(a, {})) & set(by_seed.get(b, {}))
                if key in by_seed[a][s] and key in by_seed[b][s]
            )
            if not seeds:
                continue
            g = np.array([by_seed[a][s][key] - by_seed[b][s][key] for s in seeds])
            std = float(g.std(ddof=1)) if len(g) > 1 else 0.0
            lines.append(
                f"| {a} - {b} | {key} | {g.mean():+.3f} ± {std:.3f} | {int((g > 0).sum())}/"
                f"{len(g)} | {', '.join(map(str, seeds))} |"
            )
    return "\n".join(lines) + "\n" if len(lines) > 3 else ""
