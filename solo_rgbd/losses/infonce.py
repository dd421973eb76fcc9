"""InfoNCE in MoCo's form (Eq. 3): the positive key sits in column 0 of the logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def infonce_logits(
    q: torch.Tensor, k: torch.Tensor, negatives: torch.Tensor, tau: float
) -> torch.Tensor:
    """Logits (B, 1 + K) / tau of L2-normalised queries against [positive, negatives].

    q (B, D) queries, k (B, D) positive keys, negatives (K, D) the queue. All three are
    L2-normalised here, so callers may pass raw projector outputs.
    """
    # float32 even under bf16 autocast: at tau = 0.04 logits reach 25, where bf16's 8-bit
    # mantissa would blur the positive against its hardest negatives
    q = F.normalize(q.float(), dim=1)
    k = F.normalize(k.float(), dim=1)
    negatives = F.normalize(negatives.float(), dim=1)
    with torch.autocast(device_type=q.device.type, enabled=False):
        l_pos = torch.einsum("nc,nc->n", q, k).unsqueeze(-1)  # (B, 1)
        l_neg = torch.einsum("nc,kc->nk", q, negatives)  # (B, K)
    return torch.cat([l_pos, l_neg], dim=1) / tau  # (B, 1 + K)


def infonce(
    q: torch.Tensor, k: torch.Tensor, negatives: torch.Tensor, tau: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 3: -log exp(q.k+/tau) / sum_{i=0..K} exp(q.k_i/tau), averaged over the batch.

    Returns (loss, logits); ``top1_accuracy(logits)`` reads how often the positive wins.
    """
    logits = infonce_logits(q, k.detach(), negatives.detach(), tau)
    labels = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits.float(), labels), logits


def top1_accuracy(logits: torch.Tensor) -> torch.Tensor:
    """Share of rows whose positive (column 0) has the highest logit; stays on the device."""
    return (logits.argmax(dim=1) == 0).float().mean()
