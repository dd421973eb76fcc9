"""On-device SOD scores for validation and probes (no host sync until ``compute``), as a
torchmetrics ``Metric``: its sums are reduced across DDP ranks, so every rank (and the best-
checkpoint selection) sees the scores of the whole validation set, not rank 0's share.

``maxF`` and ``MAE`` follow pysodmetrics' definitions (per-image min-max normalised
predictions quantised to 8 bits, 256 thresholds, F-curves averaged over images, beta^2 = 0.3);
the final reports use pysodmetrics itself on the saved PNGs at GT resolution.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric


class FastSODScores(Metric):
    """maxF (beta^2 = 0.3) and MAE over every image seen: per-image F-curves and absolute errors
    are summed (states reduced with ``sum`` across ranks) and averaged in :meth:`compute`."""

    full_state_update = False

    def __init__(self, beta2: float = 0.3) -> None:
        super().__init__()
        self.beta2 = beta2
        self.add_state("f_curve_sum", torch.zeros(256, dtype=torch.float64), "sum")
        self.add_state("abs_err_sum", torch.zeros((), dtype=torch.float64), "sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), "sum")

    @torch.no_grad()
    def update(self, pred: torch.Tensor, gt: torch.Tensor) -> None:
        """pred: probabilities (B, 1, H, W); gt: (B, 1, H, W) in [0, 1] (binarised at 0.5)."""
        b = pred.shape[0]
        p = pred.float().flatten(1)
        g = gt.float().flatten(1) > 0.5
        # pysodmetrics reads 8-bit maps: quantise first, then min-max per image
        p = (p * 255).round() / 255
        lo, hi = p.min(1, keepdim=True).values, p.max(1, keepdim=True).values
        p = torch.where(hi > lo, (p - lo) / (hi - lo).clamp_min(1e-12), p)
        self.abs_err_sum += (p - g.float()).abs().mean(1).double().sum()
        self.count += b
        q = (p * 255).to(torch.long)  # (B, N) in 0..255 (truncation, like np.uint8)
        offset = torch.arange(b, device=q.device)[:, None] * 256
        idx = (q + offset).flatten()
        fg = torch.bincount(idx, weights=g.flatten().float(), minlength=b * 256).view(b, 256)
        allc = torch.bincount(idx, minlength=b * 256).view(b, 256).float()
        tp = fg.flip(1).cumsum(1)  # threshold 255 -> 0
        pos = allc.flip(1).cumsum(1).clamp_min(1)
        precision = tp / pos
        recall = tp / g.sum(1, keepdim=True).clamp_min(1)
        num = (1 + self.beta2) * precision * recall
        den = torch.where(num == 0, torch.ones_like(num), self.beta2 * precision + recall)
        self.f_curve_sum += (num / den).double().sum(0)

    def compute(self) -> dict[str, float]:
        if float(self.count) == 0:
            return {"maxF": float("nan"), "MAE": float("nan")}
        curve = self.f_curve_sum / self.count
        return {"maxF": float(curve.max()), "MAE": float(self.abs_err_sum / self.count)}
