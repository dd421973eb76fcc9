"""A controlled comparison: the settings every pretrained row should share with the reference
row (lr, momentum schedule, shuffle-BN, epochs, batch size, crop size), what differs
(``--plan`` marks it), and ``controlled=true``, which aligns them.

The reference is the row named ``MBCF ...`` (the method the grid is about), else the first row
of method ``mbcf``, else the first pretrained row.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

SHARED = ("lr", "momentum", "shuffle-BN", "epochs", "batch", "crop")


def reference_row(rows: list[dict]) -> dict | None:
    pretrained = [r for r in rows if r["init"] == "pretrain"]
    named = [r for r in pretrained if str(r["name"]).startswith("MBCF")]
    mbcf = [r for r in pretrained if r.get("method") == "mbcf"]
    return (named or mbcf or pretrained or [None])[0]


def shared_settings(pre: DictConfig) -> dict[str, str]:
    """The shared settings of a composed pretraining config, as comparable text."""
    kw: dict[str, Any] = OmegaConf.to_container(pre.get("method_kwargs") or {}, resolve=True)
    if "stage1_epochs" in kw:
        one = kw.get("schedule") == "one_stage"
        lr = f"{kw['one_stage_lr']:g}" if one else f"{kw['stage1_lr']:g} / {kw['stage2_lr']:g}"
        epochs = kw["one_stage_epochs"] if one else kw["stage1_epochs"] + kw["stage2_epochs"]
    else:
        lr, epochs = f"{pre.optimizer.lr:g}", pre.trainer.max_epochs
    m = kw.get("momentum")
    momentum = "-" if not m else f"{m['base_tau']:g}->{m['final_tau']:g} {m['schedule']}"
    if m and m["schedule"] == "constant":
        momentum = f"{m['base_tau']:g} constant"
    shuffle = "-" if "shuffle_bn" not in kw else ("on" if kw["shuffle_bn"] else "off")
    return {
        "lr": lr,
        "momentum": momentum,
        "shuffle-BN": shuffle,
        "epochs": str(epochs),
        "batch": str(pre.data.batch_size),
        "crop": str(pre.augmentations.crop_size),
    }


def differences(mine: dict[str, str], ref: dict[str, str]) -> list[str]:
    """The shared settings on which a row differs from the reference (``-``: not applicable;
    lrs compare as sets: one lr throughout equals two stages at that lr)."""

    def value(key: str, settings: dict[str, str]) -> object:
        return set(settings[key].split(" / ")) if key == "lr" else settings[key]

    return [k for k in SHARED if "-" not in (mine[k], ref[k]) and value(k, mine) != value(k, ref)]


def controlled_overrides(ref: DictConfig, pre: DictConfig) -> list[str]:
    """Overrides that give a row (composed as ``pre``) the reference's shared settings."""
    kw = OmegaConf.to_container(pre.get("method_kwargs") or {}, resolve=True)
    rk = OmegaConf.to_container(ref.get("method_kwargs") or {}, resolve=True)
    out = [f"data.batch_size={ref.data.batch_size}"]
    out.append(f"augmentations.crop_size={ref.augmentations.crop_size}")
    if "stage1_epochs" not in kw:  # a method without stages: the reference's first lr, epochs
        lr = rk.get("one_stage_lr") if rk.get("schedule") == "one_stage" else rk.get("stage1_lr")
        out.append(f"optimizer.lr={lr if lr is not None else ref.optimizer.lr}")
        epochs = shared_settings(ref)["epochs"]
        out.append(f"trainer.max_epochs={epochs}")
    if kw.get("momentum") and rk.get("momentum"):
        out += [f"method_kwargs.momentum.{k}={v}" for k, v in rk["momentum"].items()]
    if "shuffle_bn" in kw and "shuffle_bn" in rk:
        out.append(f"method_kwargs.shuffle_bn={str(rk['shuffle_bn']).lower()}")
        out.append(f"method_kwargs.shuffle_bn_groups={rk['shuffle_bn_groups']}")
    return out
