"""Range and type checks of the composed pretraining config, before anything runs or is written.

Each rule names a dotted key, what it must be, and an example; a violation is a
:class:`~solo_rgbd.errors.ConfigError` that says all three.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from solo_rgbd.errors import ConfigError
from solo_rgbd.utils.paths import is_component

PRECISIONS = ("auto", "32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "64-true", "64")


def _int(lo: int, hi: int | None = None, null: bool = False) -> tuple[Callable[[Any], bool], str]:
    def ok(v: Any) -> bool:
        if v is None:
            return null
        return (
            isinstance(v, int) and not isinstance(v, bool) and v >= lo and (hi is None or v <= hi)
        )

    text = f"an integer >= {lo}" + (f" and <= {hi}" if hi is not None else "")
    return ok, text + (" (or null)" if null else "")


def _num(lo: float, hi: float, hi_open: bool = False, null: bool = False, lo_open: bool = False):
    def ok(v: Any) -> bool:
        if v is None:
            return null
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return False
        return (lo < v if lo_open else lo <= v) and (v < hi if hi_open else v <= hi)

    text = f"a number in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    return ok, text + (" (or null)" if null else "")


def _sigma_range(v: Any) -> bool:
    """[lo, hi] with 0 < lo <= hi: a Gaussian blur's sigma range."""
    return (
        isinstance(v, (list, tuple, ListConfig))
        and len(v) == 2
        and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
        and 0 < v[0] <= v[1] < 1e3
    )


def _devices(v: Any) -> bool:
    """An int >= 1, "auto", a list of device ids, or a string of comma-separated ids."""
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return v >= 1
    if isinstance(v, str):
        return v == "auto" or all(p.strip().isdigit() for p in v.split(",")) and v.strip() != ""
    if isinstance(v, (list, tuple, ListConfig)):
        return len(v) > 0 and all(
            isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in v
        )
    return False


PROB = _num(0.0, 1.0)


def _choice(*options: Any):
    return (lambda v: v in options), "one of " + ", ".join(str(o) for o in options)


def _store_plugins() -> list[str]:
    from solo_rgbd.utils.plugins import store_entry_points

    return sorted(store_entry_points())


def _formats() -> str:
    """What data.format takes: the built-ins and the plug-in stores installed now."""
    stores = ", ".join(_store_plugins()) or "none; a store is an entry point in solo_rgbd.stores"
    return f"folder, litdata or a registered store ({stores})"


def _component(null: bool = False):
    text = "one path component (no '/', '\\', '..', not absolute)"
    return (lambda v: (v is None and null) or is_component(v)), text + (" or null" if null else "")


PRETRAIN_RULES: dict[str, tuple[Callable[[Any], bool], str | Callable[[], str]]] = {
    "run_name": _component(null=True),
    "data.name": _component(),
    "seed": _int(0, 2**32 - 1),
    "log_every_n_steps": _int(1),
    "data.batch_size": _int(1),
    "data.image_size": _int(16),
    "data.decode_threads": _int(1, null=True),
    "data.val_fraction": _num(0.0, 1.0, hi_open=True),
    "data.cache_device": _choice("cpu", "cuda"),
    "data.cache": _choice("auto", "ram", "disk"),
    "data.format": (lambda v: v in ("folder", "litdata") or v in _store_plugins(), _formats),
    "augmentations.backend": _choice("fast", "kornia"),
    "augmentations.crop_size": _int(8),
    "augmentations.min_scale": _num(0.0, 1.0, lo_open=True),
    "augmentations.max_scale": _num(0.0, 1.0, lo_open=True),
    "augmentations.hflip_prob": PROB,
    "augmentations.rgb.color_jitter_prob": PROB,
    "augmentations.rgb.brightness": _num(0.0, 1.0),
    "augmentations.rgb.contrast": _num(0.0, 1.0),
    "augmentations.rgb.saturation": _num(0.0, 1.0),
    "augmentations.rgb.hue": _num(0.0, 0.5),
    "augmentations.rgb.grayscale_prob": PROB,
    "augmentations.rgb.blur_prob": PROB,
    "augmentations.rgb.blur_sigma": (_sigma_range, "[lo, hi] with 0 < lo <= hi, e.g. [0.1, 2.0]"),
    "augmentations.depth.noise_prob": PROB,
    "augmentations.depth.noise_std": _num(0.0, 1.0),
    "augmentations.depth.erase_prob": PROB,
    "augmentations.depth.blur_prob": PROB,
    "data.synthetic.camouflage_ratio": PROB,
    "trainer.channels_last": _choice("auto", True, False),
    "trainer.accelerator": _choice("auto", "cpu", "gpu", "cuda"),
    "trainer.devices": (_devices, "an integer >= 1, auto, a list of device ids or '0,1'"),
    "trainer.max_epochs": _int(1, null=True),
    "trainer.precision": _choice(*PRECISIONS),
    "trainer.accumulate_grad_batches": _int(1),
    "trainer.num_nodes": _int(1),
    "trainer.limit_train_batches": (
        lambda v: (
            v is None
            or (isinstance(v, int) and not isinstance(v, bool) and v >= 1)
            or (isinstance(v, float) and 0 < v <= 1)
        ),
        "null, an integer >= 1 (batches) or a fraction in (0, 1]",
    ),
    "optimizer.name": _choice("sgd", "lars"),
    "optimizer.lr": (
        lambda v: v is None or _num(0.0, 1e3, lo_open=True)[0](v),
        "a finite number > 0 (or null where the method sets its own lr)",
    ),
    "optimizer.momentum": _num(0.0, 1.0, hi_open=True),
    "optimizer.weight_decay": _num(0.0, 1.0),
    "optimizer.warmup_epochs": _num(0.0, 1e6),
    "optimizer.scheduler": _choice("cosine", "constant"),
    "optimizer.exclude_bias_and_norm": _choice(True, False),
    "checkpoint.every_n_steps": _int(0),
    "checkpoint.every_n_epochs": _int(0),
    "checkpoint.async_save": _choice("auto", True, False),
    "checkpoint.snapshot_every_n_epochs": _int(0),
    "checkpoint.every_n_minutes": _num(0.0, 1e6),
    "nan_guard.policy": _choice("stop", "skip"),
    "nan_guard.max_skips": _int(0),
    "nan_guard.every_n_steps": _int(1),
    "wandb.mode": _choice("online", "offline", "disabled"),
}


def check_rules(
    cfg: DictConfig, rules: dict[str, tuple[Callable[[Any], bool], str | Callable[[], str]]]
) -> None:
    for key, (ok, text) in rules.items():
        value = OmegaConf.select(cfg, key, default="__absent__", throw_on_missing=False)
        if value == "__absent__":
            continue
        if not ok(value):
            what = text() if callable(text) else text  # a callable: known only when asked
            raise ConfigError(
                f"config key '{key}' = {value!r} is invalid: it must be {what}. Fix it on the "
                f"command line, e.g. {key}=..., or in your preset."
            )


def check_pretrain_config(cfg: DictConfig) -> None:
    """Every numeric and choice setting of ``solo-rgbd pretrain`` in range."""
    check_rules(cfg, PRETRAIN_RULES)
    crop, size = cfg.augmentations.get("crop_size"), cfg.data.get("image_size")
    if isinstance(crop, int) and isinstance(size, int) and crop > size:
        raise ConfigError(
            f"augmentations.crop_size={crop} is larger than data.image_size={size} (the cached "
            "pairs); lower the crop or raise data.image_size."
        )
    _check_devices(cfg)
    aug = cfg.augmentations
    if aug.get("min_scale", 0) > aug.get("max_scale", 1):
        raise ConfigError(
            f"augmentations.min_scale={aug.min_scale} is above augmentations.max_scale="
            f"{aug.max_scale}; the crop scale range must be min <= max."
        )


def _check_devices(cfg: DictConfig) -> None:
    """A GPU asked for (trainer.accelerator=gpu, data.cache_device=cuda) must exist."""
    import torch

    if torch.cuda.is_available():
        return
    for key, value in (
        ("trainer.accelerator", cfg.trainer.get("accelerator")),
        ("data.cache_device", cfg.data.get("cache_device")),
    ):
        if value in ("gpu", "cuda"):
            raise ConfigError(
                f"config key '{key}' = {value!r} asks for a GPU, and this machine has none "
                f"that torch can use; set {key}={'auto' if key.startswith('trainer') else 'cpu'}."
            )
