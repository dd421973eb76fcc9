"""``solo-rgbd sod``: train / eval / predict the SOD decoder on frozen encoders."""

from __future__ import annotations

from collections.abc import Sequence

from solo_rgbd.errors import SoloRGBDError


def run_sod_command(args: Sequence[str]) -> int:
    raise SoloRGBDError(
        "'solo-rgbd sod' is not implemented yet (tracked in the downstream SOD issue). "
        "Pretrained encoders are exported to <run folder>/encoders/{rgb,depth}.pt and load "
        "into timm.create_model(name, in_chans=..., num_classes=0)."
    )
