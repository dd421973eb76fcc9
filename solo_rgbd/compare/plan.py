"""``solo-rgbd compare experiment=NAME --plan``: every cell's settings, without running any.

Each (row, seed) is composed exactly as :func:`solo_rgbd.compare.runner.run_cell` would compose
it, and the settings a reviewer checks against the paper are read back from that config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from solo_rgbd.compare.runner import _rows, pretrain_config, slug

COLUMNS = (
    "row",
    "seed",
    "method",
    "schedule",
    "epochs",
    "lr",
    "mask",
    "augmentation",
    "momentum",
    "shuffle-BN",
    "batch",
    "test sets",
    "differs from the reference",
)


def _augmentation(a: DictConfig) -> str:
    rgb = a.rgb
    return (
        f"crop {a.crop_size} scale [{a.min_scale:g}, {a.max_scale:g}], flip {a.hflip_prob:g}, "
        f"gray {rgb.grayscale_prob:g}, jitter {rgb.color_jitter_prob:g}, blur {rgb.blur_prob:g}"
    )


def _momentum(kw: dict[str, Any]) -> str:
    m = kw.get("momentum")
    if not m:
        return "-"
    if m["schedule"] == "constant":
        return f"{m['base_tau']:g} constant"
    return f"{m['base_tau']:g} -> {m['final_tau']:g} cosine"


def _schedule(pre: DictConfig, kw: dict[str, Any]) -> tuple[str, str, str]:
    """(schedule, epochs per stage, lrs) of a composed pretraining config."""
    if "schedule" in kw and "stage1_epochs" in kw:
        sched = kw["schedule"]
        if sched == "one_stage":
            return sched, f"{kw['one_stage_epochs']}", f"{kw['one_stage_lr']:g}"
        if sched == "intra_only":
            total = int(kw["stage1_epochs"]) + int(kw["stage2_epochs"])
            return sched, f"{total} (intra only)", f"{kw['stage1_lr']:g}"
        return (
            sched,
            f"{kw['stage1_epochs']} + {kw['stage2_epochs']}",
            f"{kw['stage1_lr']:g} / {kw['stage2_lr']:g}",
        )
    return "-", str(pre.trainer.max_epochs), f"{pre.optimizer.lr:g}"


def _test_sets(task: DictConfig) -> str:
    """The test sets of the task's composed config (``test_sets``, else its data's test split)."""
    if task.get("test_sets"):
        names = []
        for entry in OmegaConf.to_container(task.test_sets, resolve=True):
            present = Path(str(entry["path"])).expanduser().exists()
            note = "" if present or not entry.get("optional") else " (optional, absent: skipped)"
            names.append(f"{entry.get('name') or Path(entry['path']).name}{note}")
        return ", ".join(names)
    return f"{task.data.name} (test split)"


def plan_rows(cfg: DictConfig, task: DictConfig) -> list[dict[str, str]]:
    """One entry per (row, seed); ``task`` is the grid's task config, composed with its
    overrides."""
    from solo_rgbd.compare.controls import differences, reference_row, shared_settings

    out = Path(str(cfg.out))
    tests = _test_sets(task)
    cells = []
    rows = _rows(cfg)
    ref_row = reference_row(rows)
    ref = None
    if ref_row is not None:
        seed0 = int(cfg.seeds[0])
        ref_cell = out / "cells" / slug(ref_row["name"]) / f"seed{seed0}"
        ref = shared_settings(pretrain_config(cfg, ref_row, seed0, ref_cell))
    for row in rows:
        for seed in cfg.seeds:
            cell = out / "cells" / slug(row["name"]) / f"seed{seed}"
            entry = dict.fromkeys(COLUMNS, "-")
            entry.update({"row": row["name"], "seed": str(seed), "test sets": tests})
            if row["init"] != "pretrain":
                entry["method"] = f"({row['init']} init)"
                cells.append(entry)
                continue
            pre = pretrain_config(cfg, row, int(seed), cell)
            kw = OmegaConf.to_container(pre.get("method_kwargs") or {}, resolve=True)
            schedule, epochs, lr = _schedule(pre, kw)
            entry.update(
                {
                    "method": str(pre.method),
                    "schedule": schedule,
                    "epochs": epochs,
                    "lr": lr,
                    "mask": _mask(kw, schedule),
                    "augmentation": _augmentation(pre.augmentations),
                    "momentum": _momentum(kw),
                    "shuffle-BN": (
                        f"on ({kw.get('shuffle_bn_groups')} groups)"
                        if kw.get("shuffle_bn")
                        else ("off" if "shuffle_bn" in kw else "-")
                    ),
                    "batch": str(pre.data.batch_size),
                }
            )
            if ref is not None and row is not ref_row:
                diff = differences(shared_settings(pre), ref)
                entry["differs from the reference"] = ", ".join(diff) or "-"
            elif row is ref_row:
                entry["differs from the reference"] = "(the reference)"
            cells.append(entry)
    return cells


def format_plan(cfg: DictConfig, cells: list[dict[str, str]]) -> str:
    ref = next(
        (c["row"] for c in cells if c["differs from the reference"] == "(the reference)"), None
    )
    marked = sum(
        1 for c in cells if c["differs from the reference"] not in ("-", "(the reference)")
    )
    lines = [
        f"# compare experiment={cfg.name}: {len(cells)} cells (nothing was run)",
        "",
        f"controlled={str(bool(cfg.get('controlled'))).lower()}; reference row: {ref}; "
        f"{marked} cells differ from it in shared settings (lr, momentum, shuffle-BN, epochs, "
        "batch, crop)"
        + ("" if cfg.get("controlled") or not marked else "; controlled=true aligns them"),
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(c[k] for k in COLUMNS) + " |" for c in cells]
    return "\n".join(lines)


def _mask(kw, schedule: str) -> str:
    """The mask's share and, for the controls, how its channels are chosen (a random mask's
    draw when it is not shared by query and key); the encoder-level balancing, if any."""
    if "fusion" not in kw or schedule == "intra_only":
        return "-"
    fus = kw["fusion"]
    mode = str(fus.get("mask_mode", "topk"))
    ratio = f"{fus['mask_ratio']:g}"
    out = ratio if mode == "topk" else f"{ratio} {mode}"
    if mode == "random" and fus.get("random_draw", "shared") != "shared":
        out += f" ({fus['random_draw']})"
    balance = str(kw.get("balance", {}).get("mode", "none"))
    return out if balance == "none" else f"{out}; balance {balance}"
