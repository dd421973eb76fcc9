"""InfoNCE in MoCo's form (Eq. 3): the positive key sits in column 0 of the logits.

Two accuracies read what the objective learned:

- :func:`top1_accuracy`, against the queue: how often the positive beats every queued key. It
  can be won through shortcuts that are not instance discrimination: the key encoder's
  BatchNorm statistics (shared by the query's positive, not by the queue's keys) and staleness
  (while the encoder moves fast, old queued keys look unlike any fresh key).
- :func:`batch_top1_accuracy`, against the other keys of the same global batch: all of them
  come from the current key encoder (no staleness cue) and, under shuffle-BN, from BN groups
  that do not match the query's batch (no BN leak). This is the honest measure.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def infonce_logits(
    q: torch.Tensor,
    k: torch.Tensor,
    negatives: torch.Tensor,
    tau: float,
    exclude: torch.Tensor | None = None,
) -> torch.Tensor:
    """Logits (B, 1 + K) / tau of L2-normalised queries against [positive, negatives].

    q (B, D) queries, k (B, D) positive keys, negatives (K, D) the queue. All three are
    L2-normalised here, so callers may pass raw projector outputs. ``exclude`` (B, K) bool
    marks negatives that are views of the query's own sample; their logits become -inf, so
    they are neither negatives nor competitors for the top-1.
    """
    # float32 even under bf16 autocast: at tau = 0.04 logits reach 25, where bf16's 8-bit
    # mantissa would blur the positive against its hardest negatives
    q = F.normalize(q.float(), dim=1)
    k = F.normalize(k.float(), dim=1)
    negatives = F.normalize(negatives.float(), dim=1)
    with torch.autocast(device_type=q.device.type, enabled=False):
        l_pos = torch.einsum("nc,nc->n", q, k).unsqueeze(-1)  # (B, 1)
        l_neg = torch.einsum("nc,kc->nk", q, negatives)  # (B, K)
    if exclude is not None:
        l_neg = l_neg.masked_fill(exclude, float("-inf"))
    return torch.cat([l_pos, l_neg], dim=1) / tau  # (B, 1 + K)


def infonce(
    q: torch.Tensor,
    k: torch.Tensor,
    negatives: torch.Tensor,
    tau: float,
    exclude: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 3: -log exp(q.k+/tau) / sum_{i=0..K} exp(q.k_i/tau), averaged over the batch.

    ``exclude`` (B, K) bool drops the queue entries of the query's own sample from the sum.
    Returns (loss, logits); ``top1_accuracy(logits)`` reads how often the positive wins.
    """
    logits = infonce_logits(q, k.detach(), negatives.detach(), tau, exclude)
    labels = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits.float(), labels), logits


def top1_accuracy(logits: torch.Tensor) -> torch.Tensor:
    """Share of rows whose positive (column 0) has the highest logit; stays on the device."""
    return (logits.argmax(dim=1) == 0).float().mean()


@torch.no_grad()
def batch_top1_accuracy(q: torch.Tensor, keys: torch.Tensor, offset: int = 0) -> torch.Tensor:
    """Share of queries whose own key is the nearest among all keys of the global batch.

    q (B, D) this process's queries; keys (N, D) the keys of the whole global batch (every
    rank's, in rank order), of which query b's own is row ``offset + b``. Chance is 1 / N.
    """
    sim = F.normalize(q.float(), dim=1) @ F.normalize(keys.float(), dim=1).T  # (B, N)
    target = torch.arange(q.shape[0], device=q.device) + offset
    return (sim.argmax(dim=1) == target).float().mean()
