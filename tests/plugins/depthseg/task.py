"""A second task, registered from outside solo-rgbd: depth-aware segmentation of the synthetic
scenes into background / near object / far object (a made-up label: the saliency mask split at
depth 0.5). Frozen encoders (or trained ones with freeze=false), a 1x1-conv head on their last
feature maps, cross-entropy; scored with mIoU and pixel accuracy. It trains through the engine
(run folder, last.ckpt, exact resume) and plugs into ``compare`` with ``task=depthseg``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

from solo_rgbd.augment.paired import Normalize, to_unit_float
from solo_rgbd.data.decode import LabelPolicy
from solo_rgbd.data.sources import build_from_config
from solo_rgbd.engine.datamodule import CacheDataModule
from solo_rgbd.engine.fit import RunSpec, check_resume, fit_run
from solo_rgbd.engine.run import plan_run
from solo_rgbd.evaluation.report import Report
from solo_rgbd.nn.backbone import Encoder
from solo_rgbd.nn.encoder_io import export_encoders, load_encoders
from solo_rgbd.schema import TaskConfig
from solo_rgbd.tasks.base import TaskSpec
from solo_rgbd.utils.atomic import atomic_write_text

CLASSES = 3  # background, near object, far object


@dataclass
class DepthSegConfig(TaskConfig):
    """This task's own keys; the ones compare sets come with solo-rgbd's TaskConfig."""

    lr: float = 1.0e-3  # Adam
    select_by: str = "mIoU"
    output_dir: str = "outputs/depthseg"


def labels_of(batch: dict) -> torch.Tensor:
    """(B, H, W) class ids from the cached mask and depth."""
    rgb, depth = to_unit_float(batch["rgb"], batch["depth"])
    far = (depth[:, 0] >= 0.5).long()
    return torch.where(batch["gt"][:, 0] > 127, 1 + far, torch.zeros_like(far))


class DepthSeg(pl.LightningModule):
    run_kind = "depthseg"

    def __init__(self, cfg: DictConfig | dict) -> None:
        super().__init__()
        self.cfg = OmegaConf.create(cfg) if not isinstance(cfg, DictConfig) else cfg
        self.save_hyperparameters({"cfg": OmegaConf.to_container(self.cfg, resolve=True)})
        name = str(self.cfg.backbone.name)
        self.rgb, self.depth = Encoder(name, 3), Encoder(name, 1)
        self.head = nn.Conv2d(self.rgb.num_features + self.depth.num_features, CLASSES, 1)
        self.normalize = Normalize()
        self.iou = MulticlassJaccardIndex(CLASSES)
        for encoder in (self.rgb, self.depth):
            encoder.requires_grad_(not bool(self.cfg.freeze))

    def state_roles(self) -> dict[str, list[str]]:
        return {"momentum": [], "queues": []}

    def forward(self, batch: dict) -> torch.Tensor:
        rgb, depth = self.normalize(*to_unit_float(batch["rgb"], batch["depth"]))
        feats = torch.cat([self.rgb(rgb), self.depth(depth)], dim=1)  # (B, C, h, w)
        return F.interpolate(self.head(feats), size=rgb.shape[-2:], mode="bilinear")

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = F.cross_entropy(self(batch), labels_of(batch))
        self.log("train/loss", loss, on_step=True, on_epoch=False)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.iou.update(self(batch).argmax(1), labels_of(batch))

    def on_validation_epoch_end(self) -> None:
        self.log("val/mIoU", self.iou.compute())
        self.iou.reset()

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        return torch.optim.Adam(params, lr=float(self.cfg.lr))


def train(cfg: DictConfig) -> Path:
    plan = plan_run(cfg, group="train")
    pl.seed_everything(int(cfg.seed), verbose=False)
    module = DepthSeg(cfg)
    if cfg.encoders != "random":
        encoders = load_encoders(str(cfg.encoders), cfg.backbone)  # two streams, or an error
        module.rgb.load_state_dict(encoders["rgb"].state_dict())
        module.depth.load_state_dict(encoders["depth"].state_dict())
    check_resume(plan, module)
    cache = build_from_config(cfg.data, "train", True, int(cfg.image_size), TASK.labels)
    n_val = max(1, int(len(cache) * float(cfg.val_fraction)))
    data = CacheDataModule(
        cache.subset(list(range(n_val, len(cache)))),
        cache.subset(list(range(n_val))),
        int(cfg.batch_size),
        int(cfg.seed),
    )
    best = ModelCheckpoint(
        dirpath=str(plan.run_dir / "checkpoints"), filename="best", monitor="val/mIoU", mode="max"
    )
    spec = RunSpec(cfg, plan, int(cfg.trainer.max_epochs), "", int(cfg.log_every_n_steps), [best])
    fit_run(spec, module, datamodule=data)
    return plan.run_dir


@torch.no_grad()
def evaluate(cfg: DictConfig) -> Path:
    module = DepthSeg.load_from_checkpoint(
        Path(str(cfg.ckpt)) / "checkpoints" / "best.ckpt", map_location="cpu"
    ).eval()
    cache = build_from_config(cfg.data, "test", True, int(module.cfg.image_size), TASK.labels)
    iou, acc = MulticlassJaccardIndex(CLASSES), MulticlassAccuracy(CLASSES, average="micro")
    for start in range(0, len(cache), 16):
        batch = cache.batch(list(range(start, min(start + 16, len(cache)))))
        pred, target = module(batch).argmax(1), labels_of(batch)
        iou.update(pred, target)
        acc.update(pred, target)
    scores = {"mIoU": float(iou.compute()), "acc": float(acc.compute()), "n": len(cache)}
    out = Path(str(cfg.out))
    out.mkdir(parents=True, exist_ok=True)
    results = {"depthseg": {str(cfg.data.name): {"all": scores}}}  # {model: {dataset: {subset}}}
    atomic_write_text(json.dumps(results), out / "results.json")
    return out


def export(run: Path, out: Path) -> Path:
    module = DepthSeg.load_from_checkpoint(run / "checkpoints" / "best.ckpt", map_location="cpu")
    export_encoders({"rgb": module.rgb, "depth": module.depth}, out, {"method": "supervised"})
    return out


TASK = TaskSpec(
    name="depthseg",
    config_name="depthseg",
    labels=LabelPolicy(resize="nearest"),
    metrics=lambda: MulticlassJaccardIndex(CLASSES),
    select_by={"mIoU": "max"},
    report=Report(
        metrics=(("mIoU", "mIoU ↑", True), ("acc", "pixel acc ↑", True)),
        main=("mIoU", "acc"),
        headline="mIoU",
        bars=("mIoU",),
    ),
    train=train,
    evaluate=evaluate,
    export_encoders=export,
)
