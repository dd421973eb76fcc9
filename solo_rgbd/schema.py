"""The config schema: typed dataclasses that hold every default of ``solo-rgbd pretrain``.

Hydra merges ``configs/*.yaml`` onto these (``configs/pretrain.yaml`` lists ``pretrain_schema``
first in its defaults), so a YAML file or a command line sets only what differs from here, a
misspelt key is an error with a did-you-mean, and a value of the wrong type (``data.batch_size=
big``) is refused at compose time. Ranges and cross-key rules are in :mod:`config_checks`.

Method kwargs have their schema next to each method (its ``Kwargs`` dataclass); a task's
(e.g. ``tasks/sod/config.py``) next to the task. They are found through the entry-point groups
``solo_rgbd.methods`` and ``solo_rgbd.configs``, so plug-ins add theirs the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING


@dataclass
class BackboneConfig:
    name: str = "resnet50"
    pretrained: bool = False  # true downloads ImageNet weights through timm's hub (internet)
    weights: str | None = None  # a local timm / torchvision state dict or solo-learn checkpoint


@dataclass
class SyntheticConfig:
    """The embedded generator (``data/synthetic.py``); each setting is part of the cache key."""

    n: int = 512  # training pairs
    n_test: int = 128  # held-out pairs (SOD evaluation and probes)
    seed: int = 0
    size: int = 128  # pixels
    camouflage_ratio: float = 0.25
    difficulty: str = "standard"  # standard | hard: colourful clutter, wider scales, noisier depth


@dataclass
class DataSourceConfig:
    """Where pairs come from and how they are read: what every command's ``data`` has."""

    name: str = "synthetic"
    path: str | None = MISSING  # a dataset folder (any accepted layout, see data/layout.py)
    base: str | None = None  # data=paper_pretrain: the folder holding its datasets (required)
    roots: list[Any] = field(default_factory=list)  # [{path, invert_depth, name}, ...]
    invert_depth: bool = False  # map the dataset to the near = 1 convention
    # stop when a set with GT looks inverted (salient objects farther than their surroundings)
    check_polarity: bool = True
    synthetic: SyntheticConfig | None = None
    decode_threads: int | None = None  # threads for the one-time decode (null: every core)
    cache: str = "auto"  # ram | disk | auto: decoded arrays per process, or one mmap'd copy
    format: str = "folder"  # folder (any layout) | litdata (data.path: a 'data pack' folder)
    cache_dir: str | None = None  # the disk cache's folder (null: $SOLO_RGBD_CACHE/decoded)
    strict_pairs: bool = True  # RGB without depth is an error (false: skipped, warned)
    on_constant_depth: str = "error"  # error | zeros


@dataclass
class DataConfig(DataSourceConfig):
    """Pretraining's data: the source, and how its batches are made (a task sets its own
    ``image_size``, ``batch_size`` and ``val_fraction`` at the top level)."""

    image_size: int = 256  # pairs are cached as image_size x image_size tensors
    batch_size: int = 64  # the global batch, split over devices
    cache_device: str = "cpu"  # cpu | cuda: keep the decoded dataset on the GPU
    val_fraction: float = 0.0


@dataclass
class RGBAugmentation:
    color_jitter_prob: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    grayscale_prob: float = 0.2
    blur_prob: float = 0.5
    blur_sigma: list[float] = field(default_factory=lambda: [0.1, 2.0])


@dataclass
class DepthAugmentation:
    noise_prob: float = 0.0
    noise_std: float = 0.02
    erase_prob: float = 0.0
    blur_prob: float = 0.0


@dataclass
class AugmentationConfig:
    """Paired views: geometry shared by RGB and depth, colour on RGB only (MoCo v2's)."""

    backend: str = "fast"  # fast: batched kernels (augment/fast.py) | kornia: the reference
    crop_size: int = 224
    min_scale: float = 0.2
    max_scale: float = 1.0
    hflip_prob: float = 0.5
    rgb: RGBAugmentation = field(default_factory=RGBAugmentation)
    depth: DepthAugmentation = field(default_factory=DepthAugmentation)


@dataclass
class OptimizerConfig:
    name: str = "sgd"  # sgd | lars
    lr: float | None = None  # base lr, set by each method's config (null: stage lrs)
    momentum: float = 0.9
    weight_decay: float = 2.0e-4  # the paper's value
    exclude_bias_and_norm: bool = False  # MoCo: decay on every parameter (LARS methods: true)
    warmup_epochs: float = 0
    scheduler: str = "cosine"  # cosine | constant (per stage for staged methods)


@dataclass
class TrainerConfig:
    max_epochs: int | None = None  # null: the method decides (MBCF: its two stages)
    accelerator: str = "auto"  # auto | cpu | gpu
    devices: Any = 1  # per node: an int, a list of ids or "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    precision: Any = "auto"  # auto: bf16-mixed on a GPU that supports it, 32-true on CPU
    channels_last: Any = "auto"  # auto: on for CUDA; or true / false
    limit_train_batches: Any = None  # null, an int (batches) or a fraction in (0, 1]
    accumulate_grad_batches: int = 1
    enable_progress_bar: bool = True
    deterministic: bool = False
    num_threads: int | None = None  # torch CPU threads (null: torch's default)


@dataclass
class CheckpointConfig:
    # last.ckpt (and the encoder export) at an epoch's end once every_n_minutes of wall time
    # have passed since the last checkpoint (0: off); always at the end and on signals
    every_n_minutes: float = 10.0
    every_n_epochs: int = 0  # also at the end of every N-th epoch if N > 0
    every_n_steps: int = 0  # also every N optimizer steps if N > 0 (no export)
    # auto (= true): a background thread writes, the loop pays for a host copy; false: the loop
    async_save: Any = "auto"  # auto | true | false
    # > 0: also keep the encoders of every N-th epoch in snapshots/epochNNN/ (probe curves)
    snapshot_every_n_epochs: int = 0


@dataclass
class NanGuardConfig:
    policy: str = "stop"  # stop (exit 3, last good checkpoint kept) | skip (drop that step)
    max_skips: int = 10  # skip: at most this many bad steps in a row, then stop
    every_n_steps: int = 1  # read the check every N steps (one host sync per N; stop policy:
    # every step is still checked on the device and the first bad step is named)


@dataclass
class WandbConfig:
    """``loggers=[...,wandb]``: Lightning's ``WandbLogger``; files under ``<run>/wandb``."""

    project: str = "solo-rgbd"
    entity: str | None = None
    mode: str = "offline"  # online | offline (upload later: wandb sync) | disabled
    tags: list[str] = field(default_factory=list)
    group: str | None = None  # compare: the grid's name
    name: str | None = None  # the run's name there (default: the run folder's name)


@dataclass
class MlflowConfig:
    """``loggers=[...,mlflow]``: Lightning's ``MLFlowLogger``."""

    tracking_uri: str | None = None  # default file:<run>/mlruns; or sqlite:///..., http://...
    experiment: str = "solo-rgbd"
    run_name: str | None = None  # default: the run folder's name
    parent_run_id: str | None = None  # compare: the grid's parent run


@dataclass
class OnlineProbeConfig:
    enabled: bool = False
    lr: float = 1.0e-3
    dim: int = 16
    every_n_steps: int = 1


@dataclass
class FrozenProbeConfig:
    enabled: bool = False
    every_n_epochs: int = 2
    steps: int = 50
    lr: float = 1.0e-3
    batch_size: int = 16
    dim: int = 32


@dataclass
class ProbesConfig:
    """Downstream numbers during pretraining (need a GT folder and data.val_fraction > 0)."""

    online: OnlineProbeConfig = field(default_factory=OnlineProbeConfig)
    frozen: FrozenProbeConfig = field(default_factory=FrozenProbeConfig)


@dataclass
class PretrainConfig:
    """``solo-rgbd pretrain``: the root of the composed config."""

    seed: int = 0
    output_dir: str = "outputs"
    run_name: str | None = None
    resume: str | None = None  # last | auto | <run>/checkpoints/last.ckpt
    log_every_n_steps: int = 10
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    nan_guard: NanGuardConfig = field(default_factory=NanGuardConfig)
    probes: ProbesConfig = field(default_factory=ProbesConfig)
    tensorboard: bool = False  # the same as adding tensorboard to loggers
    loggers: list[str] = field(default_factory=lambda: ["csv"])  # + tensorboard, wandb, mlflow
    wandb: WandbConfig = field(default_factory=WandbConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    report: bool = True  # report.html in the run folder when the run finishes
    verbose: bool = False
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    data: DataConfig = field(default_factory=DataConfig)
    augmentations: AugmentationConfig = field(default_factory=AugmentationConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    method: str = MISSING
    method_kwargs: Any = field(default_factory=dict)  # typed by the method's Kwargs


@dataclass
class TaskConfig:
    """What ``compare`` sets in every task's config, and what the engine reads from it: every
    task's schema extends this (``SODConfig``, a plug-in's own), so a task declares only its
    own keys. Keys: the encoders to start from and how (``encoders``, ``missing_stream``,
    ``freeze``), the share of labels (``label_fraction``), where a run goes and what it resumes
    (``output_dir``, ``run_name``, ``resume``, ``seed``), an evaluation's checkpoint and output
    (``ckpt``, ``out``), the trackers, and the shared groups (``backbone.weights`` for the
    ImageNet row, data, trainer, checkpoint, guard)."""

    encoders: str = "random"  # random | imagenet | a run folder, encoders/ folder or .ckpt
    missing_stream: str = "error"  # a one-modality export: error | random (the other starts random)
    freeze: bool = True  # the paper freezes the pretrained encoders
    label_fraction: float = 1.0  # share of the training pairs whose labels are used
    image_size: int = 96  # network input
    batch_size: int = 16
    val_fraction: float = 0.1  # of the training pairs, for best-checkpoint selection
    ckpt: str | None = None  # evaluate: the task's run (or checkpoint)
    out: str | None = None  # evaluate: where its results go
    seed: int = 0
    output_dir: str = "outputs/task"
    run_name: str | None = None
    resume: str | None = None  # train: last | auto | <run>/checkpoints/last.ckpt
    log_every_n_steps: int = 5
    report: bool = True
    verbose: bool = False
    loggers: list[str] = field(default_factory=lambda: ["csv"])  # + tensorboard, wandb, mlflow
    wandb: WandbConfig = field(default_factory=WandbConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    data: DataSourceConfig = field(default_factory=DataSourceConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    nan_guard: NanGuardConfig = field(default_factory=NanGuardConfig)
