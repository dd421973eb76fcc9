"""``method_kwargs`` against a method's ``Kwargs`` dataclass: defaults filled, unknown keys and
wrong types refused with one paragraph naming the key."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

from solo_rgbd.config import all_keys, did_you_mean
from solo_rgbd.errors import ConfigError


def validate_kwargs(schema_cls: type, kwargs: Mapping[str, Any] | DictConfig) -> dict[str, Any]:
    """``kwargs`` merged over the dataclass ``schema_cls``'s defaults (struct: a key it lacks
    is an error)."""
    if isinstance(kwargs, DictConfig):
        kwargs = OmegaConf.to_container(kwargs, resolve=True)
    schema = OmegaConf.structured(schema_cls)
    try:
        return OmegaConf.to_container(OmegaConf.merge(schema, kwargs))
    except (ConfigAttributeError, ConfigKeyError, ValidationError) as exc:
        raise _kwargs_error(exc, schema) from None


def _kwargs_error(exc: Exception, schema: DictConfig) -> ConfigError:
    """OmegaConf's unknown-key or wrong-type error, as one paragraph naming the key."""
    key = f"method_kwargs.{getattr(exc, 'full_key', '') or ''}".rstrip(".")
    if isinstance(exc, ValidationError):
        return ConfigError(
            f"config key '{key}' has the wrong type: {str(exc).splitlines()[0]}. Set it to a "
            "value of the type its method's Kwargs dataclass declares."
        )
    valid = [f"method_kwargs.{k}" for k in all_keys(schema)]
    return ConfigError(
        f"unknown config key '{key}'.{did_you_mean(key, valid)} Valid keys: "
        f"{', '.join(k.removeprefix('method_kwargs.') for k in valid)}."
    )
