"""The method registry: ``METHODS[name]`` gives the class behind ``method=name``.

Methods come from the entry-point group ``solo_rgbd.methods`` (built-ins are declared in
solo-rgbd's ``setup.cfg`` like any plug-in's, see :mod:`solo_rgbd.utils.plugins`) and are
imported on first lookup; the class registers itself with :func:`register_method`::

    from solo_rgbd.methods import register_method
    from solo_rgbd.methods.base import BaseMethod

    @register_method("my_method")
    class MyMethod(BaseMethod):
        ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from solo_rgbd.errors import ConfigError
from solo_rgbd.utils.plugins import method_entry_points

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
    return sorted(set(method_entry_points()) | set(_REGISTRY))


class _Methods(Mapping[str, type]):
    def __getitem__(self, name: str) -> type:
        eps = method_entry_points()
        if name not in _REGISTRY and name in eps:
            loaded = eps[name].load()
            if name not in _REGISTRY and isinstance(loaded, type):
                register_method(name)(loaded)  # an entry point to an undecorated class
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
        return name in _REGISTRY or name in method_entry_points()


METHODS = _Methods()
