"""The SOD task's config schema: the home of every ``solo-rgbd sod`` default.

``configs/sod.yaml`` lists ``sod_schema`` first in its defaults (registered from the
``solo_rgbd.configs`` entry point), so its YAML and recipes set only what differs from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from solo_rgbd.schema import (
    BackboneConfig,
    CheckpointConfig,
    DataConfig,
    MlflowConfig,
    NanGuardConfig,
    TrainerConfig,
    WandbConfig,
)


@dataclass
class SODConfig:
    encoders: str = "random"  # random | imagenet | a run folder, encoders/ folder or .ckpt
    missing_stream: str = "error"  # a one-modality export: error | random (the other starts random)
    freeze: bool = True  # the paper freezes the pretrained encoders
    encoder_layout: str = "two_stream"  # set from the loaded encoders (nn/streams.py modes)
    decoder_dim: int = 64
    image_size: int = 96  # network input (paper: 352 or 256)
    batch_size: int = 16
    lr: float = 1.0e-4  # Adam
    weight_decay: float = 0.0
    val_fraction: float = 0.1  # of the training pairs, for best-checkpoint selection
    label_fraction: float = 1.0  # share of the (non-val) training pairs whose labels are used
    select_by: str = "MAE"  # MAE | maxF (the validation metric that picks best.ckpt)
    ckpt: str | None = None  # eval / predict: an SOD checkpoint
    input: str | None = None  # predict: a folder with RGB/depth sub-folders
    out: str | None = None  # predict: output folder; eval: defaults to <ckpt run>/eval
    pred: str | None = None  # score: a folder of saliency maps named by stem
    test_sets: list[Any] = field(default_factory=list)  # [{name, path, invert_depth}, ...]
    subset_keys: list[str] = field(default_factory=lambda: ["camouflaged"])  # meta.csv columns
    qualitative: int = 6  # images in the qualitative grid
    seed: int = 0
    output_dir: str = "outputs/sod"
    run_name: str | None = None
    resume: str | None = None  # train: last | auto | <run>/checkpoints/last.ckpt
    log_every_n_steps: int = 5
    report: bool = True  # train / eval: report.html in the run (or eval) folder at the end
    verbose: bool = False
    loggers: list[str] = field(default_factory=lambda: ["csv"])  # + tensorboard, wandb, mlflow
    wandb: WandbConfig = field(default_factory=WandbConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)  # as pretrain's
    nan_guard: NanGuardConfig = field(default_factory=NanGuardConfig)
