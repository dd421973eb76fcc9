"""Saliency losses: BCE + IoU on every side output (deep supervision)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def iou_loss(logits: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Soft IoU loss, 1 - |P n G| / |P u G| per image, averaged. gt in [0, 1], (B, 1, H, W)."""
    p = torch.sigmoid(logits)
    inter = (p * gt).sum(dim=(1, 2, 3))
    union = (p + gt - p * gt).sum(dim=(1, 2, 3))
    return (1 - (inter + 1) / (union + 1)).mean()


def sod_loss(side_logits: list[torch.Tensor], gt: torch.Tensor) -> torch.Tensor:
    """Sum over side outputs (each (B, 1, H, W) at gt's size) of BCE + IoU."""
    total = gt.new_zeros(())
    for logits in side_logits:
        total = (
            total
            + F.binary_cross_entropy_with_logits(logits.float(), gt)
            + iou_loss(logits.float(), gt)
        )
    return total
