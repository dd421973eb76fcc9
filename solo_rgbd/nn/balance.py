"""Encoder-level modality balancing for a fused contrastive objective (issue 45).

The modality-imbalance literature acts on the encoders' gradients, not on the fused input:

- **OGM-GE** (Peng et al., CVPR 2022, "Balanced Multimodal Learning via On-the-fly Gradient
  Modulation"): each step, each modality's contribution to the joint objective is measured; the
  dominant one's encoder gradient is scaled by ``1 - tanh(alpha * (ratio - 1))``, where
  ``ratio`` is its contribution over the other's, and optionally gets Gaussian noise of the
  gradient's own spread ("generalisation enhancement", GE). The paper is supervised; here the
  contribution is the drop in the fused in-batch score when one modality's fusion input is
  moved to the next sample of the batch (a derangement, so no random draw), computed with
  forwards of the fusion only (no extra backward), and only the gradients that reach the
  encoders *through the fusion* (the inter loss) are scaled.
- **modality dropout**: a whole modality's fusion input zeroed for a share ``p`` of the
  samples, each step (the simplest baseline).

Plain functions and one autograd function, no Lightning; ``methods/mbcf.py`` calls them.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

BALANCE_MODES = ("none", "ogm", "modality_dropout")
DROPPED = ("both", "rgb", "depth")
Embed = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; backward ``coef * grad`` (+ ``noise * std(grad) * N(0, 1)``)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, coef: torch.Tensor, noise: torch.Tensor | None):
        ctx.save_for_backward(coef, noise)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        coef, noise = ctx.saved_tensors
        out = grad * coef.to(grad.dtype)
        if noise is not None:  # GE: noise of the gradient's own spread (the global generator)
            out = out + noise.to(grad.dtype) * grad.std() * torch.randn_like(grad)
        return out, None, None


def scale_grad(
    x: torch.Tensor, coef: torch.Tensor, noise: torch.Tensor | None = None
) -> torch.Tensor:
    """``x`` unchanged; the gradient that flows back through it is multiplied by ``coef`` (a
    0-d tensor) and, with ``noise`` (a 0-d tensor), gets Gaussian noise of std
    ``noise * std(grad)`` (drawn even where ``noise`` is 0, so the random stream does not
    depend on the data). A coefficient of exactly 1 without noise returns the same gradient
    bit for bit."""
    return _ScaleGrad.apply(x, coef.detach(), None if noise is None else noise.detach())


def in_batch_score(queries: torch.Tensor, keys: torch.Tensor, tau: float) -> torch.Tensor:
    """Mean probability of each query's own key among the batch's keys, softmax at ``tau``:
    a smooth version of the in-batch top-1 (queries, keys (B, D))."""
    logits = F.normalize(queries.float(), dim=1) @ F.normalize(keys.float(), dim=1).T / tau
    return logits.softmax(dim=1).diagonal().mean()


@torch.no_grad()
def modality_contributions(
    embed: Embed, f_rgb: torch.Tensor, f_depth: torch.Tensor, keys: torch.Tensor, tau: float
) -> dict[str, torch.Tensor]:
    """How much the fused in-batch score falls when one modality's maps (B, C, h, w) are moved
    one sample down the batch (``torch.roll``: every sample gets another's, no random draw):
    {rgb, depth} -> a 0-d tensor, >= 0 when the modality helps."""
    base = in_batch_score(embed(f_rgb, f_depth), keys, tau)
    return {
        "rgb": base - in_batch_score(embed(f_rgb.roll(1, 0), f_depth), keys, tau),
        "depth": base - in_batch_score(embed(f_rgb, f_depth.roll(1, 0)), keys, tau),
    }


def ogm_coefficients(contrib: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """OGM's coefficient per modality: ``1 - tanh(alpha * (ratio - 1))`` for the one whose
    contribution exceeds the other's (``ratio`` = its contribution / the other's, both clamped
    to a small positive floor), 1 for the other. ``alpha = 0`` gives exactly 1 for both."""
    rgb, depth = (contrib[s].detach().float().clamp_min(1e-6) for s in ("rgb", "depth"))
    out = {}
    for name, mine, other in (("rgb", rgb, depth), ("depth", depth, rgb)):
        ratio = mine / other
        coef = 1.0 - torch.tanh(alpha * (ratio - 1.0))
        out[name] = torch.where(ratio > 1.0, coef, torch.ones_like(coef))
    return out


def dropout_masks(
    batch: int, p: float, dropped: str = "both", device: torch.device | None = None
) -> dict[str, torch.Tensor]:
    """{rgb, depth} -> (B,) {0, 1} multipliers: exactly ``round(p * B)`` samples, drawn from
    torch's global generator (saved in every checkpoint), lose one modality's fusion input;
    with ``dropped='both'`` the first half of them (rounded down) lose RGB, the rest depth."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"modality dropout p must be in [0, 1], got {p}.")
    if dropped not in DROPPED:
        raise ValueError(f"modality dropout drops one of {DROPPED}, got {dropped!r}.")
    n = int(math.floor(p * batch + 0.5))
    chosen = torch.randperm(batch, device=device)[:n]
    split = {"both": n // 2, "rgb": n, "depth": 0}[dropped]
    keep = {s: torch.ones(batch, device=device) for s in ("rgb", "depth")}
    keep["rgb"][chosen[:split]] = 0.0
    keep["depth"][chosen[split:]] = 0.0
    return keep


class Balancer:
    """One of :data:`BALANCE_MODES` applied to the fusion's two inputs, each step.

    ``balancer(embed, f_rgb, f_depth, keys)`` -> the maps the fusion should see (the same
    values; under ``ogm`` their gradient back to the encoders scaled, under
    ``modality_dropout`` some samples' maps zeroed) and the step's statistics to log
    (``balance_coef_<s>``, ``contribution_<s>``, ``dropped_<s>``). ``embed(f_rgb, f_depth)``
    is the fused query encoder (B, D); ``keys`` (B, D) the fused keys of the batch.
    """

    def __init__(
        self, mode: str = "none", alpha: float = 0.5, noise: float = 0.0, p: float = 0.5,
        drop: str = "both", tau: float = 0.04,
    ) -> None:  # fmt: skip
        if mode not in BALANCE_MODES:
            raise ValueError(f"balance mode must be one of {BALANCE_MODES}, got {mode!r}.")
        self.mode, self.alpha, self.noise, self.p, self.drop, self.tau = (
            mode, float(alpha), float(noise), float(p), drop, float(tau),
        )  # fmt: skip
        self.probes = mode == "ogm"  # calls ``embed`` for the contributions

    def __call__(
        self, embed: Embed, f_rgb: torch.Tensor, f_depth: torch.Tensor, keys: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        if self.mode == "ogm":
            contrib = modality_contributions(
                embed, f_rgb.detach(), f_depth.detach(), keys, self.tau
            )
            coef = ogm_coefficients(contrib, self.alpha)
            # GE: noise on the suppressed modality's gradient only (no host sync to decide)
            noise = {
                s: self.noise * (c < 1).float() if self.noise else None for s, c in coef.items()
            }
            stats = {f"balance_coef_{s}": c for s, c in coef.items()}
            stats.update({f"contribution_{s}": c for s, c in contrib.items()})
            return (
                scale_grad(f_rgb, coef["rgb"], noise["rgb"]),
                scale_grad(f_depth, coef["depth"], noise["depth"]),
                stats,
            )
        if self.mode == "modality_dropout":
            keep = dropout_masks(f_rgb.shape[0], self.p, self.drop, f_rgb.device)
            stats = {f"dropped_{s}": 1.0 - m.mean() for s, m in keep.items()}
            return (
                f_rgb * keep["rgb"].to(f_rgb.dtype)[:, None, None, None],
                f_depth * keep["depth"].to(f_depth.dtype)[:, None, None, None],
                stats,
            )
        return f_rgb, f_depth, {}
