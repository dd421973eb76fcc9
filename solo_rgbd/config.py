"""Config composition (Hydra, from the packaged ``configs/``) and validation helpers.

The composed config is in struct mode: an unknown key is an error that names the key and the
closest valid one, instead of a silently ignored typo.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from solo_rgbd.errors import ConfigError
from solo_rgbd.utils.plugins import (
    config_schema_entry_points,
    config_search_dirs,
    method_entry_points,
)

CONFIG_GROUPS = (
    "method",
    "backbone",
    "data",
    "augmentations",
    "optimizer",
    "trainer",
    "experiment",
    "ablation",
)


def config_dir() -> Path:
    """solo-rgbd's own ``configs/``: the source tree's, or the installed copy."""
    candidates = [
        Path(__file__).resolve().parent.parent / "configs",
        Path(sys.prefix) / "share" / "solo-rgbd" / "configs",
    ]
    for path in candidates:
        if (path / "pretrain.yaml").exists():
            return path
    raise ConfigError(
        "cannot find solo-rgbd's configs/ folder (looked in "
        + ", ".join(str(p) for p in candidates)
        + "). Reinstall with 'pip install -e .' from the repository."
    )


def search_dirs() -> list[Path]:
    """Every config root, solo-rgbd's first: plug-ins and ``SOLO_RGBD_CONFIGS`` add theirs."""
    own = config_dir()
    return [own, *config_search_dirs(own)]


def group_options(group: str) -> list[str]:
    return sorted({p.stem for root in search_dirs() for p in (root / group).glob("*.yaml")})


def all_keys(cfg: Any, prefix: str = "") -> list[str]:
    """Every dotted key of a config (leaves and inner nodes), without resolving anything."""
    node = OmegaConf.to_container(cfg, resolve=False) if isinstance(cfg, DictConfig) else cfg
    keys: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            dotted = f"{prefix}{key}"
            keys.append(dotted)
            keys.extend(all_keys(value, dotted + "."))
    return keys


def did_you_mean(key: str, candidates: Iterable[str]) -> str:
    candidates = list(candidates)
    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.5)
    if not close:
        leaf = key.rsplit(".", 1)[-1]
        by_leaf = {c.rsplit(".", 1)[-1]: c for c in candidates}
        leaf_close = difflib.get_close_matches(leaf, list(by_leaf), n=1, cutoff=0.6)
        close = [by_leaf[leaf_close[0]]] if leaf_close else []
    return f" Did you mean '{close[0]}'?" if close else ""


def _required(key: str, *, _root_: DictConfig) -> Any:
    """``${required:data.base}``: the value of ``key``, or an error if it is null or unset."""
    value = OmegaConf.select(_root_, key, default=None, throw_on_missing=False)
    if value is None or value == "???":
        raise ConfigError(
            f"config key '{key}' must be set for this preset, e.g. {key}=/path/to/datasets "
            "on the command line."
        )
    return value


if not OmegaConf.has_resolver("required"):
    OmegaConf.register_new_resolver("required", _required)


def register_schemas(methods: bool = True) -> None:
    """Put every schema into Hydra's ConfigStore: ``<name>_schema`` for each root config
    (entry points ``solo_rgbd.configs``) and, with ``methods``, ``method_schema/<method>`` for
    each method whose class declares a ``Kwargs`` dataclass (entry points
    ``solo_rgbd.methods``; importing them imports PyTorch and Lightning). A plug-in that fails
    to import is skipped here; ``method=`` it then fails with the import error."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for name, ep in config_schema_entry_points().items():
        store.store(name=f"{name}_schema", node=ep.load())
    if not methods:
        return
    for name, ep in method_entry_points().items():
        try:
            kwargs = getattr(ep.load(), "Kwargs", None)
        except Exception:  # a broken plug-in must not break every other method's config
            continue
        if kwargs is not None:
            store.store(
                group="method_schema",
                name=name,
                node={"method_kwargs": kwargs},
                package="_global_",
            )


def _hydra_compose(config_name: str, overrides: list[str], methods: bool = True) -> DictConfig:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_schemas(methods)

    # Hydra finds a primary config only in the folder it starts from (hydra.searchpath is read
    # from the primary config): a plug-in's root config (a task's) starts from its own folder
    dirs = search_dirs()
    primary = next((d for d in dirs if (d / f"{config_name}.yaml").is_file()), dirs[0])
    extra = [f"file://{d}" for d in dirs if d != primary]
    hydra_overrides = [f"hydra.searchpath=[{','.join(extra)}]"] if extra else []
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(primary), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=hydra_overrides + overrides)


def compose(config_name: str, overrides: Sequence[str] = ()) -> DictConfig:
    """Compose ``configs/<config_name>.yaml`` (and plug-ins' configs) with ``overrides``.

    When Hydra refuses, the overrides are checked one by one (grammar, group options, keys)
    and the first bad one becomes a :class:`ConfigError` naming it and the closest valid name.
    """
    overrides = list(overrides)
    if config_name in SCHEMA_ROOTS:
        quick_check(config_name, overrides)
    try:
        cfg = _hydra_compose(config_name, overrides)
    except Exception as exc:  # Hydra's composition, missing-option and grammar errors
        raise _diagnose(config_name, overrides, exc) from None
    _check_added_keys(config_name, overrides)
    _name_the_data(cfg, overrides)
    OmegaConf.set_struct(cfg, True)
    return cfg


def quick_check(config_name: str, overrides: Sequence[str]) -> None:
    """The config without the methods' ``Kwargs`` schemas, which import PyTorch and Lightning:
    a typo in a key, a value of the wrong type or a bad group option answers in about a
    second. ``method_kwargs`` and ``method=`` are left to the full composition."""
    light = [o for o in overrides if not o.lstrip("+~").startswith(("method_kwargs", "method="))]
    if (config_name, tuple(light)) in _checked:
        return
    try:
        _hydra_compose(config_name, light, methods=False)
    except Exception as exc:  # Hydra's composition, missing-option and grammar errors
        raise _diagnose(config_name, light, exc, methods=False) from None
    _checked.add((config_name, tuple(light)))


_checked: set[tuple[str, tuple[str, ...]]] = set()


def _name_the_data(cfg: DictConfig, overrides: list[str]) -> None:
    """A user's own folder (``data.path=...``) is named after itself, not after the default
    data config (``synthetic``), unless ``data.name`` says otherwise."""
    data = cfg.get("data") if "data" in cfg else None
    if not isinstance(data, DictConfig) or data.get("name") != "synthetic":
        return
    named = any(o.lstrip("+").startswith("data.name=") for o in overrides)
    if data.get("path") and not named:
        data.name = Path(str(data.path)).expanduser().resolve().name or "data"


#: root configs with a schema: a key added with '+' must already be one of their keys
SCHEMA_ROOTS = ("pretrain", "sod")


def _check_added_keys(config_name: str, overrides: list[str]) -> None:
    """``+key=value`` adds a key Hydra does not know; on a schema'd root that is a typo."""
    added = [o for o in overrides if o.startswith("+") and not o.startswith("++")]
    keys = [o[1:].split("=", 1)[0] for o in added]
    keys = [k for k in keys if k not in _groups() and not k.startswith("method_kwargs.")]
    if config_name not in SCHEMA_ROOTS or not keys:
        return
    base = _hydra_compose(config_name, [o for o in overrides if o not in added])
    known = all_keys(base)
    for key in keys:
        if OmegaConf.select(base, key, default="__absent__") == "__absent__":
            raise ConfigError(
                f"unknown config key '{key}' (added with '+').{did_you_mean(key, known)} "
                f"'{config_name}' has a fixed set of keys; drop the '+' to set an existing key, "
                f"or see 'solo-rgbd {config_name} --cfg' for them."
            )


#: keys that were renamed: an old name is answered with the new one
RENAMED = {"data.num_workers": "data.decode_threads"}


def _groups() -> set[str]:
    return {p.name for root in search_dirs() for p in root.iterdir() if p.is_dir()}


def _diagnose(
    config_name: str, overrides: list[str], exc: Exception, methods: bool = True
) -> ConfigError:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    typed = _schema_error(exc)
    if typed is not None:
        return typed
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception as parse_exc:
        line = (str(parse_exc).strip().splitlines() or [""])[0]
        return ConfigError(
            f"cannot parse the overrides {overrides}: {line}. In Hydra's override grammar, "
            "quote list items and values that hold '=', '(', spaces or brackets, e.g. "
            '\'rows=[{name: "A (b)", overrides: ["x=1"]}]\'.'
        )
    groups = _groups()
    group_overrides, key_overrides = [], []
    for text, o in zip(overrides, parsed, strict=True):
        (group_overrides if o.key_or_group in groups else key_overrides).append((text, o))
    for _, o in group_overrides:
        value = o.value()
        if isinstance(value, str) and value not in group_options(o.key_or_group):
            return _missing_option_error(o.key_or_group, value)
    try:
        base = _hydra_compose(config_name, [t for t, _ in group_overrides], methods)
    except Exception:
        return ConfigError(first)
    known = set(all_keys(base))
    for _, o in key_overrides:
        if o.is_add() or o.key_or_group.startswith("hydra."):
            continue
        if o.key_or_group in RENAMED:
            new = RENAMED[o.key_or_group]
            return ConfigError(
                f"config key '{o.key_or_group}' was renamed to '{new}'; use {new}=... instead."
            )
        if o.key_or_group not in known:
            key = o.key_or_group
            return ConfigError(
                f"unknown config key '{key}'.{did_you_mean(key, sorted(known | groups))} "
                "Configs are strict: a typo is an error. See 'solo-rgbd pretrain --help' for "
                "the groups and the keys printed by --cfg."
            )
    return ConfigError(first)


def _schema_error(exc: BaseException) -> ConfigError | None:
    """A value of the wrong type, found by the schema (in an override or in a YAML file)."""
    from omegaconf.errors import ValidationError

    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ValidationError):
        cause = cause.__cause__ or cause.__context__
    if cause is None:
        return None
    key = getattr(cause, "full_key", None) or "?"
    what = str(cause).strip().splitlines()[0]
    return ConfigError(
        f"config key '{key}' has the wrong type: {what}. Give it a value of the type its schema "
        "declares (solo_rgbd/schema.py, the task's config.py, or the method's Kwargs), "
        f"e.g. {key}=... on the command line."
    )


def _missing_option_error(group: str, option: str) -> ConfigError:
    if group == "method":
        names = sorted(set(method_entry_points()) | set(group_options("method")))
        return ConfigError(
            f"method '{option}' is not registered; registered: {', '.join(names)}. "
            "Pick one of them with method=NAME (a plug-in method also needs "
            f"configs/method/{option}.yaml next to its module)."
        )
    options = group_options(group)
    hint = did_you_mean(option, options)
    return ConfigError(
        f"'{option}' is not an option of the config group '{group}'; options: "
        f"{', '.join(options) or '(none)'}.{hint} Use {group}=NAME with one of them."
    )


def check_missing(cfg: DictConfig) -> None:
    """Fail on mandatory values ('???') left unset, naming each key."""

    def walk(node: Any, prefix: str) -> list[str]:
        if isinstance(node, dict):
            return [k for key, v in node.items() for k in walk(v, f"{prefix}{key}.")]
        if isinstance(node, list):
            return [k for i, v in enumerate(node) for k in walk(v, f"{prefix}{i}.")]
        return [prefix[:-1]] if node == "???" else []

    # unresolved, so that an interpolation pointing at a missing value does not raise
    missing = sorted(walk(OmegaConf.to_container(cfg, resolve=False), ""))
    if missing:
        raise ConfigError(
            f"config key(s) {', '.join(missing)} must be set (they are '???' in the preset), "
            f"e.g. {missing[0]}=/path/to/dataset on the command line."
        )
    try:  # ${required:KEY} interpolations
        OmegaConf.to_container(cfg, resolve=True)
    except Exception as exc:
        cause: BaseException | None = exc
        while cause is not None and not isinstance(cause, ConfigError):
            cause = cause.__cause__ or cause.__context__
        if cause is not None:
            raise ConfigError(str(cause)) from None
        raise
