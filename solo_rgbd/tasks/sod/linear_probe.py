"""Per-modality dense linear probes: what each encoder learned, one modality at a time.

For each encoder (``rgb`` on RGB alone, ``depth`` on depth alone; ``rgbd`` for early fusion) the
last two feature levels of the *frozen* encoder (eval mode, no gradient) are upsampled to the
finer one, concatenated, and read by a single 1x1 convolution that predicts saliency; the
logits are upsampled to the input size and trained with BCE. Nothing but that convolution
learns, so the scores (maxF, MAE on the test pairs) measure the representation, not a decoder:
the paper's "balance" as a number, one per modality.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from solo_rgbd.augment.paired import EvalTransform
from solo_rgbd.data.pairstore import PairStore
from solo_rgbd.data.sources import index_loader
from solo_rgbd.evaluation.fast import FastSODScores
from solo_rgbd.nn.backbone import Encoder
from solo_rgbd.nn.streams import Streams


@torch.no_grad()
def _features(encoder: Encoder, x: torch.Tensor) -> torch.Tensor:
    """The last two stages of a frozen encoder at the finer one's size: (B, C3 + C4, h, w)."""
    mode = encoder.training
    encoder.eval()
    try:
        fine, coarse = encoder.stages(x)[-2:]
    finally:
        encoder.train(mode)
    coarse = F.interpolate(coarse, size=fine.shape[-2:], mode="bilinear", align_corners=False)
    return torch.cat([fine, coarse], dim=1)


def _modality(name: str, rgb: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
    """The input of encoder ``name``: RGB alone, depth alone, or both (early fusion)."""
    return Streams.of_names([name]).inputs(rgb, depth)[name]


def probe_modalities(
    encoders: dict[str, Encoder],
    train: PairStore,
    test: PairStore,
    size: int = 64,
    steps: int = 100,
    lr: float = 1e-2,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    seed: int = 0,
    losses: dict[str, list[float]] | None = None,
) -> dict[str, dict[str, float]]:
    """{modality: {"maxF", "MAE"}} of a 1x1-conv saliency probe on each frozen encoder.

    ``losses``, if given, receives each probe's training losses (one per step).
    """
    device = torch.device(device)
    transform = EvalTransform(size).to(device)
    out: dict[str, dict[str, float]] = {}
    for name, encoder in encoders.items():
        encoder = encoder.to(device)
        channels = sum(encoder.stage_channels[-2:])
        head = nn.Conv2d(channels, 1, kernel_size=1).to(device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            nn.init.normal_(head.weight, std=0.01)
            nn.init.zeros_(head.bias)
        opt = torch.optim.Adam(head.parameters(), lr=lr)
        loader = index_loader(train, min(batch_size, len(train)), True, True, seed)
        done = 0
        while done < steps:
            for batch in loader:
                batch = {k: v.to(device) for k, v in batch.items()}
                rgb, depth = transform(batch["rgb"], batch["depth"])
                gt = F.interpolate(batch["gt"].float() / 255, size=rgb.shape[-2:], mode="bilinear")
                feats = _features(encoder, _modality(name, rgb, depth))
                logits = F.interpolate(head(feats), size=rgb.shape[-2:], mode="bilinear")
                loss = F.binary_cross_entropy_with_logits(logits, gt)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if losses is not None:
                    losses.setdefault(name, []).append(float(loss.detach()))
                done += 1
                if done >= steps:
                    break
        scores = FastSODScores().to(device)
        with torch.no_grad():
            for batch in index_loader(test, 32, False, False):
                batch = {k: v.to(device) for k, v in batch.items()}
                rgb, depth = transform(batch["rgb"], batch["depth"])
                gt = F.interpolate(batch["gt"].float() / 255, size=rgb.shape[-2:], mode="bilinear")
                feats = _features(encoder, _modality(name, rgb, depth))
                logits = F.interpolate(head(feats), size=rgb.shape[-2:], mode="bilinear")
                scores.update(torch.sigmoid(logits), gt)
        out[name] = scores.compute()
    return out
