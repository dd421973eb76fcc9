"""What ``--help`` prints for the config-driven subcommands: their keys, in plain text, and
``--cfg`` (with Hydra's habit ``--cfg job`` accepted)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

from omegaconf import DictConfig, OmegaConf


def cfg_flag(args: Sequence[str]) -> tuple[bool, list[str]]:
    """Whether ``--cfg`` (``--cfg job``, ``--cfg all``) was given, and the other arguments."""
    args, rest, show = list(args), [], False
    for i, arg in enumerate(args):
        if arg == "--cfg":
            show = True
        elif not (arg in ("job", "all") and i and args[i - 1] == "--cfg"):
            rest.append(arg)
    return show, rest


def keys_help(cfg: DictConfig, command: str) -> str:
    """Every key of a composed config, grouped under its section, wrapped: what ``key=value``
    may set (``--cfg`` prints every value)."""
    tree = OmegaConf.to_container(cfg, resolve=False, throw_on_missing=False)
    top = [k for k, v in tree.items() if not isinstance(v, dict) or not v]
    lines = [f"keys (key=value; 'solo-rgbd {command} --cfg' prints every value):"]
    lines += textwrap.wrap(", ".join(top), 96, initial_indent="  ", subsequent_indent="  ")
    for section, value in tree.items():
        if isinstance(value, dict) and value:
            names = []
            for key, sub in value.items():
                if isinstance(sub, dict) and sub:
                    names.append(f"{key}.{{{', '.join(sub)}}}")
                else:
                    names.append(key)
            body = f"{section}.{{{', '.join(names)}}}"
            lines += textwrap.wrap(body, 96, initial_indent="  ", subsequent_indent="      ")
    return "\n".join(lines)
