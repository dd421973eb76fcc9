"""Momentum (EMA) encoders, on lightly's helpers: a frozen copy, and the schedules.

The EMA update (theta_k <- tau theta_k + (1 - tau) theta_q over parameters; BatchNorm
statistics are left to each encoder's own forward passes, as in MoCo) is one fused
``torch._foreach_lerp_`` over every (online, momentum) pair: theta_k + (1 - tau)(theta_q -
theta_k), one pass over the weights instead of lightly's multiply-then-add per pair.
lightly's cosine reaches its end value at ``max_steps - 1``; the helpers here pass
``total + 1`` so the value at step ``total`` is the end value and no step of the run is spent
at it (an lr of 0 would waste the last step).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from lightly.models.utils import deactivate_requires_grad
from lightly.utils.scheduler import cosine_schedule, cosine_warmup_schedule
from torch import nn


def momentum_copy(module: nn.Module) -> nn.Module:
    """A deep copy that receives no gradients: the key encoder of ``module``."""
    twin = copy.deepcopy(module)
    deactivate_requires_grad(twin)
    return twin


class EMAUpdate:
    """theta_k <- tau theta_k + (1 - tau) theta_q over the parameters of (online, momentum)
    module pairs, in one fused multi-tensor kernel. The parameter lists are built once per set
    of pairs (a staged method changes its pairs between stages)."""

    def __init__(self) -> None:
        self._key: tuple[int, ...] = ()
        self._online: list[torch.Tensor] = []
        self._target: list[torch.Tensor] = []

    @torch.no_grad()
    def __call__(self, pairs: Sequence[tuple[nn.Module, nn.Module]], tau: float) -> None:
        key = tuple(id(m) for pair in pairs for m in pair)
        if key != self._key:
            self._online = [p for online, _ in pairs for p in online.parameters()]
            self._target = [p for _, target in pairs for p in target.parameters()]
            if len(self._online) != len(self._target):
                raise ValueError("a momentum pair's modules have different parameter lists")
            self._key = key
        if self._target:
            torch._foreach_lerp_(self._target, self._online, 1.0 - float(tau))


def cosine_tau(step: int, max_steps: int, base_tau: float, final_tau: float) -> float:
    """BYOL's schedule: base_tau at step 0, rising to final_tau at max_steps."""
    if max_steps <= 0:
        return final_tau
    return cosine_schedule(min(max(step, 0), max_steps), max_steps + 1, base_tau, final_tau)


def warmup_cosine(step: int, total: int, warmup: int, lr: float, kind: str = "cosine") -> float:
    """Linear warmup over ``warmup`` steps, then cosine decay to 0 at ``total`` (or constant)."""
    if warmup > 0 and step < warmup:
        return lr * (step + 1) / warmup
    if kind == "constant":
        return lr
    step = min(max(step, 0), max(total, 1))
    return cosine_warmup_schedule(step, max(total, 1) + 1, lr, 0.0, warmup, 0.0)
