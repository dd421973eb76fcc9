"""A method's parameter groups, typed, and the per-step lr the schedule sets on them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from solo_rgbd.errors import ConfigError
from solo_rgbd.nn.lars import LARS


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


def build_optimizer(
    learnable_params: list[ParamGroup | Mapping[str, Any]], opt: Any, base: float
) -> torch.optim.Optimizer:
    """SGD or LARS (``optimizer.name``) over a method's parameter groups, each group's lr as a
    scale of the run's ``base`` lr; with ``exclude_bias_and_norm`` the 1-d parameters (biases,
    norm scales and shifts) get no weight decay."""
    wd = float(opt.weight_decay)
    exclude = bool(opt.get("exclude_bias_and_norm", False))
    groups = []
    for group in map(ParamGroup.of, learnable_params):
        g = group.torch_group(base)
        params = [p for p in g["params"] if p.requires_grad]
        if exclude:  # biases and norm scales/shifts (1-d) get no weight decay
            groups.append({**g, "params": [p for p in params if p.ndim > 1]})
            groups.append({**g, "params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0})
        else:
            groups.append({**g, "params": params})
    groups = [g for g in groups if g["params"]]
    if opt.name == "sgd":
        return torch.optim.SGD(groups, lr=base, momentum=float(opt.momentum), weight_decay=wd)
    if opt.name == "lars":  # lightly's rule, without its two host syncs per parameter
        return LARS(groups, lr=base, momentum=float(opt.momentum), weight_decay=wd)
    raise ConfigError(f"optimizer.name '{opt.name}' is unknown; use sgd or lars.")
