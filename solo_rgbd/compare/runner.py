"""``solo-rgbd compare experiment=NAME``: pretrain -> task -> evaluation, for a grid.

The grid logic only; what a cell runs (pretrain -> task) is passed in by
:mod:`solo_rgbd.commands.compare`. Every row of ``configs/compare/NAME.yaml`` is a pretraining
method (with overrides) or an initialisation: ``random``; ``imagenet``; ``supervised``, encoders
trained with labels on the task's training pairs through the same decoder, then frozen (the
upper bound). Every (row, seed) is a *cell*. A finished cell writes ``done.json`` and is reused
when the command runs again; a failed cell writes ``failed.json``, is reported, does not stop
the others, and is retried next time. The tables (markdown + CSV) are shaped like the paper's
Tables 1-4, with mean ± std over seeds, plus a bar chart per metric; when the grid has both
bounds, the report says whether the benchmark can rank encoders at all.
"""

from __future__ import annotations

import json
import shutil
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf, open_dict

from solo_rgbd.compare.cells import CellResult
from solo_rgbd.compare.gaps import diagnostic_gaps, paired_gaps
from solo_rgbd.compare.ownership import cell_slugs, check_table_titles, claim_grid, read_done, slug
from solo_rgbd.compare.protocols import (
    FINETUNE,
    PROBES,
    aggregate_finetune,
    aggregate_probes,
    cell_diagnostics,
    diagnostics_section,
    finetune_section,
    probe_table,
)
from solo_rgbd.compare.tracking import tracker_overrides
from solo_rgbd.config import compose, search_dirs
from solo_rgbd.errors import Aborted, ConfigError, Preempted
from solo_rgbd.evaluation.report import Report, paper_table, write_tables
from solo_rgbd.utils.atomic import atomic_write_text

CellRunner = Callable[[DictConfig, dict, int, Path], CellResult]
ROW_KEYS = {"name", "method", "init", "overrides"}
INITS = ("pretrain", "random", "imagenet", "supervised")
#: below this gap in the task's headline metric (SOD: maxF) between the Supervised and Random
#: rows the benchmark cannot rank encoders
SEPARATION_MIN = 0.05


def experiment_options() -> list[str]:
    """The grids in ``compare/`` of every config root (solo-rgbd's, ``SOLO_RGBD_CONFIGS``'s,
    plug-ins')."""
    return sorted({p.stem for root in search_dirs() for p in (root / "compare").glob("*.yaml")})


def compose_experiment(args: Sequence[str]) -> DictConfig:
    """The grid: ``experiment=NAME`` (a ``compare/NAME.yaml`` of a config root), or the path of
    a grid YAML of the user's own, then the overrides."""
    args = list(args)
    files = [a for a in args if "=" not in a and a.endswith((".yaml", ".yml"))]
    shared = [a for a in args if a.startswith(("data.", "test_sets="))]
    rest = [a for a in args if not a.startswith("experiment=") and a not in files + shared]
    if files:
        cfg = _compose_file(Path(files[-1]).expanduser(), rest)
    else:
        names = [a.split("=", 1)[1] for a in args if a.startswith("experiment=")]
        name = names[-1] if names else "quick"
        if name not in experiment_options():
            raise ConfigError(
                f"compare experiment '{name}' does not exist; options: "
                f"{', '.join(experiment_options())} (configs/compare/NAME.yaml, or a folder in "
                "SOLO_RGBD_CONFIGS with compare/NAME.yaml), or give the path of your grid's YAML."
            )
        cfg = compose(f"compare/{name}", rest)
    if shared:  # the data of every cell: its pretraining and its task
        with open_dict(cfg):
            cfg.pretrain = [*cfg.pretrain, *(a for a in shared if a.startswith("data."))]
            task = str(cfg.get("task") or "sod")
            cfg[task] = [*(cfg.get(task) or []), *shared]
    return cfg


def _compose_file(path: Path, overrides: list[str]) -> DictConfig:
    """A grid YAML anywhere: composed as ``compare/<name>`` of a config root made for it."""
    import os
    import tempfile

    if not path.is_file():
        raise ConfigError(f"grid file '{path}' does not exist; give the path of a grid YAML.")
    with tempfile.TemporaryDirectory() as root:
        (Path(root) / "compare").mkdir()
        (Path(root) / "compare" / path.name).symlink_to(path.resolve())
        before = os.environ.get("SOLO_RGBD_CONFIGS")
        os.environ["SOLO_RGBD_CONFIGS"] = os.pathsep.join(filter(None, [root, before]))
        try:
            return compose(f"compare/{path.stem}", overrides)
        finally:
            if before is None:
                del os.environ["SOLO_RGBD_CONFIGS"]
            else:
                os.environ["SOLO_RGBD_CONFIGS"] = before


def _rows(cfg: DictConfig) -> list[dict]:
    rows = []
    for i, row in enumerate(OmegaConf.to_container(cfg.rows, resolve=True)):
        unknown = set(row) - ROW_KEYS
        if unknown or "name" not in row:
            raise ConfigError(
                f"rows[{i}] = {row}: each row needs a name and may have only {sorted(ROW_KEYS)}."
            )
        init = row.get("init", "pretrain" if row.get("method") else None)
        if init not in INITS:
            raise ConfigError(
                f"rows[{i}] ('{row['name']}'): init must be pretrain (with a "
                "method), random, imagenet or supervised."
            )
        rows.append({**row, "init": init, "overrides": list(row.get("overrides") or [])})
    if cfg.get("imagenet_weights"):
        rows.insert(1, {"name": "ImageNet", "init": "imagenet", "overrides": []})
    return rows


def _check_gaps(cfg: DictConfig, names: list[str]) -> None:
    for i, pair in enumerate(cfg.get("gaps") or []):
        if len(pair) != 2 or not set(pair) <= set(names):
            raise ConfigError(
                f"gaps[{i}] = {list(pair)}: each gap is [ROW_A, ROW_B], two names from rows "
                f"({', '.join(names)})."
            )


def pretrain_overrides(cfg: DictConfig, row: dict, seed: int, cell: Path) -> list[str]:
    """The pretraining overrides of a cell. ``budget_epochs`` sets ``trainer.max_epochs`` only
    for methods without a schedule of their own: a staged method's epochs are its stages (set
    in ``method_overrides`` or the row), so a row keeps the budget the paper ran it with."""
    from solo_rgbd.methods.registry import METHODS

    per_method = (cfg.get("method_overrides") or {}).get(row["method"]) or []
    budget = (
        []
        if METHODS[row["method"]].has_own_schedule
        else [f"trainer.max_epochs={int(cfg.budget_epochs)}"]
    )
    return [
        f"method={row['method']}",
        *cfg.pretrain,
        *budget,
        *per_method,
        *row["overrides"],
        f"seed={seed}",
        f"output_dir={cell / 'pretrain'}",
        "run_name=run",
        *tracker_overrides(cfg, row["name"], seed),
    ]


def pretrain_config(cfg: DictConfig, row: dict, seed: int, cell: Path) -> DictConfig:
    """A cell's pretraining config; with ``controlled=true`` every row but the reference takes
    the reference's shared settings (:mod:`solo_rgbd.compare.controls`)."""
    pre = compose("pretrain", pretrain_overrides(cfg, row, seed, cell))
    if not cfg.get("controlled"):
        return pre
    from solo_rgbd.compare.controls import controlled_overrides, reference_row

    ref_row = reference_row(_rows(cfg))
    if ref_row is None or ref_row["name"] == row["name"]:
        return pre
    ref = compose("pretrain", pretrain_overrides(cfg, ref_row, seed, cell))
    aligned = controlled_overrides(ref, pre)
    return compose("pretrain", [*pretrain_overrides(cfg, row, seed, cell), *aligned])


def _without_protocols(scores: dict) -> dict:
    """A cell's frozen-protocol scores: {dataset: {subset: scores}} without the extras."""
    return {k: v for k, v in scores.items() if k not in (PROBES, FINETUNE)}


def aggregate(per_seed: list[dict], report: Report) -> dict:
    """Mean and std over seeds per dataset / subset / metric (std 0 for one seed)."""
    out: dict = {}
    for dataset, subsets in per_seed[0].items():
        for subset in subsets:
            cell = {}
            for key, _, _ in report.metrics:
                values = np.array([s[dataset][subset][key] for s in per_seed])
                cell[key] = float(values.mean())
                cell[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
            cell["n"] = per_seed[0][dataset][subset]["n"]
            cell["seeds"] = len(per_seed)
            out.setdefault(dataset, {})[subset] = cell
    return out


def _cell(
    cfg: DictConfig, row: dict, seed: int, out: Path, run_cell: CellRunner, failed: list[str]
) -> CellResult | None:
    """A finished cell's scores, or the cell run now (None if it failed: noted in ``failed``
    and its folder's failed.json)."""
    cell = out / "cells" / slug(row["name"]) / f"seed{seed}"
    done = read_done(cell / "done.json", out, f"{row['name']} seed {seed}")
    if done is not None:
        print(f"[compare] reuse {row['name']} seed {seed}")
        return done
    if cell.is_symlink() or (cell.exists() and not cell.is_dir()):
        cell.unlink()  # not a folder of this grid's: only the name goes
    elif cell.exists():
        shutil.rmtree(cell)  # a partial cell from an interrupted run
    cell.mkdir(parents=True)
    print(f"[compare] run {row['name']} seed {seed} (started {time.strftime('%H:%M:%S')})")
    began = time.monotonic()
    try:
        scores = run_cell(cfg, row, seed, cell)
    except (Preempted, Aborted):
        raise  # a signal stops the whole grid; the cell reruns next time
    except Exception as exc:  # a failed cell must not stop the others
        print(f"[compare] failed {row['name']} seed {seed} after {_took(began)}")
        failed.append(f"{row['name']} (seed {seed}): {type(exc).__name__}: {exc}")
        atomic_write_text(
            json.dumps({"error": str(exc), "traceback": traceback.format_exc()}, indent=2),
            cell / "failed.json",
        )
        return None
    atomic_write_text(json.dumps(scores.to_json(), indent=2), cell / "done.json")
    print(f"[compare] done {row['name']} seed {seed} in {_took(began)}")
    return scores


def _took(began: float) -> str:
    seconds = int(time.monotonic() - began)
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


#: the diagnostics compared seed by seed between the rows of ``gaps`` (issues 31, 45)
GAP_DIAGNOSTICS = (
    "depth_reliance_share", "reliance_depth_shuffle", "reliance_depth_zero", "grad_norm_ratio",
    "acc_batch_inter",
)  # fmt: skip


def check_grid(cfg: DictConfig) -> tuple[Path, list[dict]]:
    """The grid's folder and rows, checked before anything is written: rows, gaps, cell folders
    and table names (:mod:`solo_rgbd.compare.ownership`), then ``out`` claimed."""
    rows = _rows(cfg)
    _check_gaps(cfg, [r["name"] for r in rows])
    cell_slugs([r["name"] for r in rows])
    check_table_titles([str(t.title) for t in cfg.tables])
    out = Path(str(cfg.out))
    claim_grid(out)
    return out, rows


def run_compare(cfg: DictConfig, run_cell: CellRunner, report: Report) -> tuple[Path, list[str]]:
    """Run every missing cell with ``run_cell(cfg, row, seed, cell_dir)`` (it returns
    {dataset: {subset: scores}}), reuse finished ones, and write the tables with the task's
    ``report`` (its metrics and headline)."""
    out, rows = check_grid(cfg)
    results: dict[str, dict] = {}
    probes: dict[str, dict] = {}
    finetune: dict[str, dict] = {}
    diagnostics: dict[str, list[dict[str, float]]] = {}
    by_seed: dict[str, dict[int, dict]] = {}
    diag_by_seed: dict[str, dict[int, dict[str, float]]] = {}
    failed: list[str] = []
    for row in rows:
        per_seed = []
        mine = by_seed.setdefault(row["name"], {})
        for seed in cfg.seeds:
            result = _cell(cfg, row, int(seed), out, run_cell, failed)
            if result is not None:
                per_seed.append(result.to_json())
                mine[int(seed)] = result.to_json()
        diag = {
            int(seed): cell_diagnostics(out / "cells" / slug(row["name"]) / f"seed{seed}")
            for seed in cfg.seeds
        }
        diagnostics[row["name"]] = list(diag.values())
        diag_by_seed[row["name"]] = {s: d for s, d in diag.items() if d}
        if per_seed:
            probes[row["name"]] = aggregate_probes(per_seed)
            finetune[row["name"]] = aggregate_finetune(per_seed, aggregate, report)
            results[row["name"]] = aggregate([_without_protocols(s) for s in per_seed], report)
    write_grid_manifest(cfg, rows, out, report)
    write_report(
        cfg,
        results,
        out,
        {k: v for k, v in probes.items() if v},
        report,
        {k: v for k, v in finetune.items() if v},
        diagnostics,
        paired_gaps(by_seed, pairs := [list(p) for p in cfg.get("gaps") or []], report)
        + diagnostic_gaps(diag_by_seed, pairs, GAP_DIAGNOSTICS),
    )
    return out, failed


def write_grid_manifest(cfg: DictConfig, rows: list[dict], out: Path, report: Report) -> None:
    """``grid.json``: the rows, their cell folders (relative to ``out``) and the task's chart
    metrics, for the grid's report."""
    manifest = {
        "name": str(cfg.name),
        "seeds": [int(s) for s in cfg.seeds],
        "headline": report.headline,
        "bars": list(report.bars),
        "rows": [
            {
                "name": row["name"],
                "init": row["init"],
                "seeds": [int(s) for s in cfg.seeds],
                "cells": {str(s): f"cells/{slug(row['name'])}/seed{s}" for s in cfg.seeds},
            }
            for row in rows
        ],
    }
    atomic_write_text(json.dumps(manifest, indent=1), out / "grid.json")


def separation_notes(results: dict, report: Report, inits: dict[str, str]) -> list[str]:
    """Whether each test set can rank representations: the Supervised bound minus the Random
    one in the task's headline metric (signed so that positive means Supervised is better).
    The bounds are the rows whose ``init`` is ``supervised`` and ``random`` (``inits``: row
    name -> init), whatever the rows are called."""
    bound = {init: name for name, init in reversed(list(inits.items())) if name in results}
    if "supervised" not in bound or "random" not in bound:
        return []
    sup, rnd = bound["supervised"], bound["random"]
    key = report.headline
    sign = 1.0 if report.higher_is_better(key) else -1.0
    notes = []
    for dataset, subsets in results[sup].items():
        random = results[rnd].get(dataset, {}).get("all", {}).get(key, float("nan"))
        gap = sign * (subsets["all"][key] - random)
        if gap >= SEPARATION_MIN:
            notes.append(
                f"- {dataset}: {sup} - {rnd} = {gap:+.3f} {key}: the benchmark separates "
                "representations; rows between the two bounds can be ranked."
            )
        else:
            notes.append(
                f"- {dataset}: {sup} - {rnd} = {gap:+.3f} {key} < {SEPARATION_MIN}: this "
                "benchmark cannot separate representations (the decoder does the work); do not "
                "rank the rows on it."
            )
    return ["## Can this benchmark rank encoders?\n", *notes, ""]


def write_report(
    cfg: DictConfig,
    results: dict,
    out: Path,
    probes: dict | None,
    report: Report,
    finetune: dict | None = None,
    diagnostics: dict | None = None,
    gaps: str = "",
) -> None:
    from solo_rgbd.evaluation.report import plot_bars

    write_tables(results, out, "all_rows", report=report)
    parts = [
        f"# compare experiment={cfg.name}\n",
        f"seeds: {list(cfg.seeds)}; pretraining budget: {cfg.budget_epochs} epochs per row; "
        "cells: mean ± std over seeds.\n",
        "controlled=true: every pretrained row trained at the reference row's lr, momentum, "
        "shuffle-BN, epochs, batch and crop.\n"
        if cfg.get("controlled")
        else "controlled=false: rows keep their methods' own settings ('compare --plan' marks "
        "where they differ from the reference row).\n",
    ]
    inits = {str(r.name): str(r.get("init", "pretrain")) for r in cfg.rows}
    parts += separation_notes(results, report, inits)
    for table in cfg.tables:
        present = {r: results[r] for r in table.rows if r in results}
        if not present:
            continue
        metrics = [report.info(m) for m in table.metrics]
        parts.append(f"## {table.title}\n\n{paper_table(present, metrics, report=report)}\n")
        write_tables(present, out, slug(table.title.split(":")[0]), report=report)
    if probes:
        parts.append(
            "## Per-modality linear probes (a 1x1 conv on each frozen encoder alone)\n\n"
            f"{probe_table(probes, report)}\n"
        )
        atomic_write_text(json.dumps(probes, indent=2), out / "probes.json")
    if gaps:
        parts.append(gaps)
    if diagnostics and diagnostics_section(diagnostics):
        parts.append(diagnostics_section(diagnostics))
    if finetune:
        parts.append(finetune_section(finetune, out, report))
        atomic_write_text(json.dumps(finetune, indent=2), out / "finetune.json")
    atomic_write_text("\n".join(parts), out / "tables.md")
    for key in report.bars:
        plot_bars(results, key, out / f"bars_{key}.png")
