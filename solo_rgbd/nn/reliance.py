"""Does a fused representation use depth? Modality reliance and mask diagnostics (issue 31).

The statistic once used to judge MBCF's mask (the RGB attention mass it removes) is about 0.52
at initialisation and moves with feature scale, so it cannot compare rows. These measure what
the mask is meant to change:

- **reliance**: the fused in-batch top-1 minus the same with one modality's input zeroed, or
  shuffled across the batch (one fixed permutation per step). ``depth_reliance_share`` =
  depth / (depth + rgb) from the shuffle variant (NaN when neither modality matters);
- **mask diagnostics**: how alike the masked channel sets are across the samples of a batch
  (Jaccard; near 1 means a fixed channel drop) and between a sample's query and key, the share
  of channels masked in >= 95 % of samples, and the attention itself: its top-half mass
  (comparable across every row, no mask included), the std of its logits and the mean gate.

Plain functions and a context manager, no Lightning; a method calls them on logging steps only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import nn

BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
Embed = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Accuracy = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@torch.no_grad()
def modality_reliance(
    embed: Embed, x_rgb: torch.Tensor, x_depth: torch.Tensor, keys: torch.Tensor,
    accuracy: Accuracy, step: int,
) -> dict[str, torch.Tensor]:  # fmt: skip
    """``embed(x_rgb, x_depth)`` -> queries (B, D) scored by ``accuracy(queries, keys)``; each
    modality's input zeroed, then shuffled across the batch (a permutation seeded by ``step``,
    so the global random stream is untouched)."""
    b = x_rgb.shape[0]
    perm = torch.randperm(b, generator=torch.Generator().manual_seed(int(step))).to(x_rgb.device)
    base = accuracy(embed(x_rgb, x_depth), keys)
    out = {
        "reliance_depth_zero": base - accuracy(embed(x_rgb, torch.zeros_like(x_depth)), keys),
        "reliance_rgb_zero": base - accuracy(embed(torch.zeros_like(x_rgb), x_depth), keys),
        "reliance_depth_shuffle": base - accuracy(embed(x_rgb, x_depth[perm]), keys),
        "reliance_rgb_shuffle": base - accuracy(embed(x_rgb[perm], x_depth), keys),
    }
    depth = out["reliance_depth_shuffle"].clamp_min(0)
    both = depth + out["reliance_rgb_shuffle"].clamp_min(0)
    out["depth_reliance_share"] = torch.where(both > 0, depth / both.clamp_min(1e-12), torch.nan)
    return out


def concat_embed(z_rgb: torch.Tensor, z_depth: torch.Tensor) -> torch.Tensor:
    """The two encoders' embeddings side by side, each L2-normalised: the fused representation
    of a method without a fusion encoder (B, D_rgb + D_depth)."""
    unit = torch.nn.functional.normalize
    return torch.cat([unit(z_rgb, dim=1), unit(z_depth, dim=1)], dim=1)


@contextlib.contextmanager
def batchnorm_stats_kept(module: nn.Module) -> Iterator[None]:
    """Extra forwards in training mode (batch statistics, as the step's own forward) that leave
    every BatchNorm's running statistics and counter as they were: the forwards update copies,
    and the original buffers (which the step's backward still holds) are put back untouched."""
    names = ("running_mean", "running_var", "num_batches_tracked")
    saved = [
        (bn, {n: getattr(bn, n) for n in names})
        for bn in module.modules()
        if isinstance(bn, BATCHNORMS) and bn.track_running_stats
    ]
    for bn, buffers in saved:
        for name, tensor in buffers.items():
            setattr(bn, name, tensor.clone())
    try:
        yield
    finally:
        for bn, buffers in saved:
            for name, tensor in buffers.items():
                setattr(bn, name, tensor)


def _jaccard(inter: torch.Tensor, union: torch.Tensor) -> torch.Tensor:
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(inter))


@torch.no_grad()
def mask_diagnostics(
    a_rgb: torch.Tensor, logits_rgb: torch.Tensor, keep: torch.Tensor,
    keep_key: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:  # fmt: skip
    """Attention (B, C) and keep masks (B, C) in {0, 1} -> the mask diagnostics (see above)."""
    top = torch.sort(a_rgb, dim=1, descending=True).values
    half = a_rgb.shape[1] // 2
    out = {
        "attention_top_half_mass_rgb": (top[:, :half].sum(1) / top.sum(1).clamp_min(1e-12)).mean(),
        "attention_logit_std_rgb": logits_rgb.float().std(dim=1).mean(),
        "attention_gate_mean_rgb": a_rgb.mean(),
    }
    masked = (keep < 0.5).float()  # (B, C)
    if not bool(masked.any()):  # no mask: no overlap to speak of
        return out
    b = masked.shape[0]
    size = masked.sum(1)
    inter = masked @ masked.T  # (B, B)
    pairs = _jaccard(inter, size[:, None] + size[None, :] - inter)
    off = ~torch.eye(b, dtype=torch.bool, device=masked.device)
    out["mask_jaccard_samples"] = pairs[off].mean() if b > 1 else pairs.mean()
    out["mask_always_share"] = (masked.mean(0) >= 0.95).float().mean()
    if keep_key is not None:
        other = (keep_key < 0.5).float()
        both = (masked * other).sum(1)
        out["mask_jaccard_query_key"] = _jaccard(both, size + other.sum(1) - both).mean()
    return out
