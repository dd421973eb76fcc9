"""The method registry: ``METHODS[name]`` gives the class behind ``method=name``.

Built-in methods are imported lazily on first lookup (no import-everything ``__init__``);
plug-ins register themselves with :func:`register_method`::

    from solo_rgbd.methods import register_method
    from solo_rgbd.methods.base import BaseMethod

    @register_method("my_method")
    class MyMethod(BaseMethod):
        ...
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from solo_rgbd.errors import ConfigError

# name -> module that registers it when imported
_BUILTIN: dict[str, str] = {
    "mbcf": "solo_rgbd.methods.mbcf",
    "alignment": "solo_rgbd.methods.alignment",
    "mocov2plus": "solo_rgbd.methods.mocov2plus",
    "simclr": "solo_rgbd.methods.simclr",
    "byol": "solo_rgbd.methods.byol",
    "barlow_twins": "solo_rgbd.methods.barlow_twins",
    "vicreg": "solo_rgbd.methods.barlow_twins",
}
_REGISTRY: dict[str, type] = {}


def register_method(name: str) -> Callable[[type], type]:
    """Class decorator: make ``method=name`` build this class."""

    def deco(cls: type) -> type:
        existing = _REGISTRY.get(name)
        if existing is not None and existing is not cls:
            raise ValueError(
                f"method '{name}' is already registered by {existing.__module__}."
                f"{existing.__qualname__}; pick another name."
            )
        cls.method_name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def registered_methods() -> list[str]:
    return sorted(set(_BUILTIN) | set(_REGISTRY))


class _Methods(Mapping[str, type]):
    def __getitem__(self, name: str) -> type:
        if name not in _REGISTRY and name in _BUILTIN:
            importlib.import_module(_BUILTIN[name])
        if name not in _REGISTRY:
            raise ConfigError(
                f"method '{name}' is not registered; registered: "
                f"{', '.join(registered_methods())}. Pick one with method=NAME."
            )
        return _REGISTRY[name]

    def __iter__(self) -> Iterator[str]:
        return iter(registered_methods())

    def __len__(self) -> int:
        return len(registered_methods())

    def __contains__(self, name: Any) -> bool:
        return name in _REGISTRY or name in _BUILTIN


METHODS = _Methods()
