"""A method's parameter groups, typed, and the per-step lr the schedule sets on them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from solo_rgbd.errors import ConfigError


@dataclass
class ParamGroup:
    """One group of a method's parameters and how the optimizer treats it.

    ``lr``: its own lr (None: the run's; the schedule then scales it by ``lr / base lr``);
    ``weight_decay``: its own (None: the run's); ``static_lr``: the group keeps its lr and
    skips the schedule (e.g. SimSiam's predictor)."""

    name: str
    params: list[torch.nn.Parameter]
    lr: float | None = None
    weight_decay: float | None = None
    static_lr: bool = False

    @classmethod
    def of(cls, group: ParamGroup | Mapping[str, Any]) -> ParamGroup:
        """A group as given (a mapping with these keys is read as one, by name)."""
        if isinstance(group, ParamGroup):
            return group
        unknown = set(group) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(
                f"parameter group {group.get('name', '?')!r} has unknown key(s) "
                f"{sorted(unknown)}; a group has {', '.join(cls.__dataclass_fields__)}."
            )
        return cls(**group)

    def torch_group(self, base_lr: float) -> dict[str, Any]:
        """The dict ``torch.optim`` takes, with ``lr_scale`` and ``static_lr`` for
        :func:`set_scheduled_lr`."""
        g: dict[str, Any] = {"params": list(self.params)}
        if self.static_lr:
            g["static_lr"] = True
        own = self.lr if self.lr is not None else base_lr
        g["lr_scale"] = own / base_lr if base_lr > 0 else 1.0
        if self.lr is not None:
            g["lr"] = float(self.lr)
        if self.weight_decay is not None:
            g["weight_decay"] = float(self.weight_decay)
        return g


def set_scheduled_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """This step's lr for every group (times its ``lr_scale``), except ``static_lr`` groups."""
    for group in optimizer.param_groups:
        if not group.get("static_lr", False):
            group["lr"] = lr * group.get("lr_scale", 1.0)
