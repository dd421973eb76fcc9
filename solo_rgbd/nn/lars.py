"""LARS (You et al., 2017) without host syncs: lightly's rule, computed on the device.

lightly's ``LARS`` decides per parameter in Python (``if p_norm != 0 and g_norm != 0``), which
reads two norms to the host for every parameter on every step: about 320 syncs per step for
two ResNet-50s and their projectors on a GPU. This optimizer applies the same update with
``torch.where`` instead, so the decision stays on the device:

    trust = eta * ||p|| / (||g|| + wd * ||p|| + eps)   where both norms are non-zero, else 1
    d_p   = trust * (g + wd * p)                        (no decay where a norm is zero)
    buf   = momentum * buf + (1 - dampening) * d_p ;  p -= lr * (buf or d_p + momentum * buf)

Groups with ``weight_decay == 0`` (biases and norm layers under ``exclude_bias_and_norm``) get
plain SGD with momentum, as in lightly. The state (``momentum_buffer`` per parameter) has
lightly's layout, so checkpoints written with either optimizer resume with the other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch


class LARS(torch.optim.Optimizer):
    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        trust_coefficient: float = 0.001,
        eps: float = 1e-8,
    ) -> None:
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(
                f"LARS needs lr, momentum, weight_decay >= 0 ({lr}, {momentum}, {weight_decay})."
            )
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            trust_coefficient=trust_coefficient,
            eps=eps,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            wd = float(group["weight_decay"])
            if wd != 0:
                grads = _lars_directions(params, grads, wd, group)
            for p, d_p in zip(params, grads, strict=True):
                if group["momentum"] != 0:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        buf = state["momentum_buffer"] = torch.clone(d_p).detach()
                    else:
                        buf = state["momentum_buffer"]
                        buf.mul_(group["momentum"]).add_(d_p, alpha=1 - group["dampening"])
                    d_p = d_p.add(buf, alpha=group["momentum"]) if group["nesterov"] else buf
                p.add_(d_p, alpha=-group["lr"])
        return loss


def _lars_directions(
    params: list[torch.Tensor], grads: list[torch.Tensor], wd: float, group: dict[str, Any]
) -> list[torch.Tensor]:
    """trust * (g + wd * p) where ||p|| and ||g|| are non-zero, else g (module doc)."""
    p_norms = torch.stack(torch._foreach_norm(params))  # (N,)
    g_norms = torch.stack(torch._foreach_norm(grads))
    ok = (p_norms != 0) & (g_norms != 0)
    trust = p_norms / (g_norms + p_norms * wd + group["eps"]) * group["trust_coefficient"]
    trust = torch.where(ok, trust, torch.ones_like(trust))
    decay = torch.where(ok, torch.full_like(trust, wd), torch.zeros_like(trust))
    return [
        g.add(p * d.to(p.dtype)).mul_(t.to(g.dtype))
        for p, g, d, t in zip(params, grads, decay.unbind(), trust.unbind(), strict=True)
    ]
