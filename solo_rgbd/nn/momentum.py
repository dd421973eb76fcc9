"""Momentum (EMA) encoders, on lightly's helpers: a frozen copy, and the schedules.

The EMA update itself is lightly's ``update_momentum`` (theta_k <- tau theta_k + (1 - tau)
theta_q over parameters; BatchNorm statistics are left to each encoder's own forward passes,
as in MoCo). lightly's cosine reaches its end value at ``max_steps - 1``; the helpers here pass
``total + 1`` so the value at step ``total`` is the end value and no step of the run is spent
at it (an lr of 0 would waste the last step).
"""

from __future__ import annotations

import copy

from lightly.models.utils import deactivate_requires_grad
from lightly.utils.scheduler import cosine_schedule, cosine_warmup_schedule
from torch import nn


def momentum_copy(module: nn.Module) -> nn.Module:
    """A deep copy that receives no gradients: the key encoder of ``module``."""
    twin = copy.deepcopy(module)
    deactivate_requires_grad(twin)
    return twin


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
