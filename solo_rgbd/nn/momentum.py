"""Momentum (EMA) encoders: copy, freeze, update, and the tau schedule (BYOL/MoCo)."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


def momentum_copy(module: nn.Module) -> nn.Module:
    """A deep copy that receives no gradients: the key encoder of ``module``."""
    twin = copy.deepcopy(module)
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin


@torch.no_grad()
def momentum_update(online: nn.Module, target: nn.Module, tau: float) -> None:
    """theta_k <- tau * theta_k + (1 - tau) * theta_q for every parameter pair.

    Buffers (BatchNorm statistics) are left to each encoder's own forward passes, as in MoCo.
    """
    online_params = [p.detach() for p in online.parameters()]
    target_params = list(target.parameters())
    torch._foreach_mul_(target_params, tau)
    torch._foreach_add_(target_params, online_params, alpha=1.0 - tau)


def cosine_tau(step: int, max_steps: int, base_tau: float, final_tau: float) -> float:
    """BYOL's schedule: base_tau at step 0, rising to final_tau at max_steps."""
    if max_steps <= 0:
        return final_tau
    progress = min(max(step / max_steps, 0.0), 1.0)
    return final_tau - (final_tau - base_tau) * (math.cos(math.pi * progress) + 1) / 2
