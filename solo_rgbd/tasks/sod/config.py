"""The SOD task's config schema: the home of every ``solo-rgbd sod`` default.

``configs/sod.yaml`` lists ``sod_schema`` first in its defaults (registered from the
``solo_rgbd.configs`` entry point), so its YAML and recipes set only what differs from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from solo_rgbd.schema import TaskConfig


@dataclass
class SODConfig(TaskConfig):
    """SOD's own keys on top of :class:`~solo_rgbd.schema.TaskConfig` (what every task has)."""

    encoder_layout: str = "two_stream"  # set from the loaded encoders (nn/streams.py modes)
    decoder_dim: int = 64
    lr: float = 1.0e-4  # Adam
    weight_decay: float = 0.0
    select_by: str = "MAE"  # MAE | maxF (the validation metric that picks best.ckpt)
    input: str | None = None  # predict: a folder with RGB/depth sub-folders
    pred: str | None = None  # score: a folder of saliency maps named by stem
    test_sets: list[Any] = field(default_factory=list)  # [{name, path, invert_depth}, ...]
    subset_keys: list[str] = field(default_factory=lambda: ["camouflaged"])  # meta.csv columns
    qualitative: int = 6  # images in the qualitative grid
    output_dir: str = "outputs/sod"
