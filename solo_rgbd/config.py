"""Config composition (Hydra, from the packaged ``configs/``) and validation helpers.

The composed config is in struct mode: an unknown key is an error that names the key and the
closest valid one, instead of a silently ignored typo.
"""

from __future__ import annotations

import difflib
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from solo_rgbd.errors import ConfigError
from solo_rgbd.utils.plugins import config_search_dirs, method_entry_points

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
SOD_GROUPS = ("backbone", "data", "trainer", "recipe")


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
    """Every dotted key of a config (leaves and inner nodes)."""
    keys: list[str] = []
    if isinstance(cfg, DictConfig):
        for key in cfg:
            dotted = f"{prefix}{key}"
            keys.append(dotted)
            node = cfg._get_node(key)
            if isinstance(node, DictConfig):
                keys.extend(all_keys(node, dotted + "."))
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


def _override_key(override: str) -> str:
    return re.split(r"[=~]", override.lstrip("+~"), maxsplit=1)[0]


def compose(config_name: str, overrides: Sequence[str] = ()) -> DictConfig:
    """Compose ``configs/<config_name>.yaml`` with command-line ``overrides``.

    Turns Hydra's errors into :class:`ConfigError`s that name the key and the fix.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import ConfigCompositionException, MissingConfigException

    overrides = list(overrides)
    extra = [f"file://{d}" for d in search_dirs()[1:]]
    hydra_overrides = [f"hydra.searchpath=[{','.join(extra)}]"] if extra else []
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        try:
            cfg = hydra_compose(config_name=config_name, overrides=hydra_overrides + overrides)
        except MissingConfigException as exc:
            raise _missing_option_error(str(exc)) from None
        except ConfigCompositionException as exc:
            raise _composition_error(config_name, overrides, exc) from None
        except Exception as exc:  # override grammar errors and the like
            first = str(exc).splitlines()[0]
            raise ConfigError(
                f"cannot parse the overrides {overrides}: {first}. In Hydra's override grammar, "
                "quote list items and values that hold '=', '(', spaces or brackets, e.g. "
                '\'rows=[{name: "A (b)", overrides: ["x=1"]}]\'.'
            ) from None
    OmegaConf.set_struct(cfg, True)
    return cfg


def _missing_option_error(message: str) -> ConfigError:
    match = re.search(r"Could not find '([^/']+)/([^']+)'", message)
    if not match:
        return ConfigError(message.split("\n")[0])
    group, option = match.groups()
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


def _composition_error(config_name: str, overrides: list[str], exc: Exception) -> ConfigError:
    message = str(exc)
    match = re.search(r"Could not override '([^']+)'", message) or re.search(
        r"Could not (?:append|delete) (?:to config\. )?(?:an item|the key)? ?'?([\w.]+)", message
    )
    if not match:
        return ConfigError(message.split("\n")[0])
    key = match.group(1)
    rest = [o for o in overrides if _override_key(o) != key]
    try:
        base = compose(config_name, rest)
        candidates = all_keys(base) + list(CONFIG_GROUPS) + list(SOD_GROUPS)
    except ConfigError:
        candidates = list(CONFIG_GROUPS) + list(SOD_GROUPS)
    return ConfigError(
        f"unknown config key '{key}'.{did_you_mean(key, candidates)} Configs are strict: a "
        "typo is an error. See 'solo-rgbd pretrain --help' for the groups and the keys "
        "printed by --cfg."
    )


def require(cfg: DictConfig, key: str, ok: bool, what: str) -> None:
    """Raise a :class:`ConfigError` about ``key`` unless ``ok``."""
    if not ok:
        value = OmegaConf.select(cfg, key, default=None)
        raise ConfigError(f"config key '{key}' = {value!r} is invalid: {what}.")


def to_plain(node: Any) -> Any:
    if isinstance(node, (DictConfig, ListConfig)):
        return OmegaConf.to_container(node, resolve=True)
    return node


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
