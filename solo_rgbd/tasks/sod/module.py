"""Training the SOD decoder with Lightning (``solo-rgbd sod train``)."""

from __future__ import annotations

from typing import Any

import kornia.augmentation as K
import lightning.pytorch as pl
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torchmetrics import MeanMetric

from solo_rgbd.augment.paired import Normalize, to_unit_float
from solo_rgbd.evaluation.fast import FastSODScores
from solo_rgbd.losses.sod import sod_loss
from solo_rgbd.nn.backbone import Encoder
from solo_rgbd.nn.streams import Streams, network_pair
from solo_rgbd.tasks.sod.model import SODNet
from solo_rgbd.tasks.sod.spec import SOD


class SODInputs(nn.Module):
    """Cached batch -> normalised float inputs and GT; paired crop/flip when training."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.geometric = nn.Sequential(
            K.RandomResizedCrop((size, size), scale=(0.6, 1.0), cropping_mode="resample"),
            K.RandomHorizontalFlip(),
        )
        self.normalize = Normalize()

    @torch.no_grad()
    def forward(self, batch: dict, train: bool) -> tuple[torch.Tensor, ...]:
        rgb, depth = to_unit_float(batch["rgb"], batch["depth"])
        gt = batch["gt"].float() / 255 if "gt" in batch else None
        if train:
            x = self.geometric(torch.cat([rgb, depth, gt], dim=1))  # one box for all three
            rgb, depth, gt = x[:, :3], x[:, 3:4], x[:, 4:]
        rgb, depth = self.normalize(rgb, depth)
        return rgb, depth, gt


class SODModule(pl.LightningModule):
    run_kind = "sod"  # what a resume checkpoint of this module must have been written by

    def __init__(self, cfg: DictConfig | dict) -> None:
        super().__init__()
        if not isinstance(cfg, DictConfig):
            cfg = OmegaConf.create(cfg)
        self.cfg = cfg
        self.save_hyperparameters({"cfg": OmegaConf.to_container(cfg, resolve=True)})
        name = str(cfg.backbone.name)
        # weights come from the checkpoint, or from set_encoders() before training
        streams = Streams.of_mode(str(cfg.get("encoder_layout", "two_stream")))
        first, second = network_pair({k: Encoder(name, c) for k, c in streams.channels.items()})
        self.net = SODNet(first, second, int(cfg.decoder_dim), bool(cfg.freeze))
        self.inputs = SODInputs(int(cfg.image_size))
        self.val_scores = SOD.metrics()  # maxF and MAE on the device
        # the epoch's mean loss lives in the checkpoint, so a resumed epoch's mean is exact
        self.train_loss = MeanMetric()
        self.train_loss.persistent(True)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("state_dict", {})
        for key, value in self.train_loss.state_dict(prefix="train_loss.").items():
            state.setdefault(key, value)  # checkpoints written before the mean was saved

    def state_roles(self) -> dict[str, list[str]]:
        return {"momentum": [], "queues": []}  # every tensor is trained (or frozen) weights

    def set_encoders(self, encoders: dict[str, Encoder]) -> None:
        """Load stream-keyed encoders (:func:`~solo_rgbd.nn.encoder_io.load_encoders`)."""
        first, second = network_pair(encoders)
        self.net.rgb_encoder.model.load_state_dict(first.model.state_dict())
        if second is not None:
            self.net.depth_encoder.model.load_state_dict(second.model.state_dict())

    def forward(self, rgb: torch.Tensor, depth: torch.Tensor) -> list[torch.Tensor]:
        return self.net(rgb, depth)

    @torch.no_grad()
    def predict_probs(self, batch: dict) -> torch.Tensor:
        """Saliency probabilities (B, 1, S, S) of a cached batch."""
        rgb, depth, _ = self.inputs(batch, train=False)
        return torch.sigmoid(self.net(rgb, depth)[0])

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        rgb, depth, gt = self.inputs(batch, train=True)
        loss = sod_loss(self.net(rgb, depth), gt)
        self.train_loss.update(loss.detach(), weight=gt.shape[0])
        self.log("train/loss_step", loss, prog_bar=True, on_step=True, on_epoch=False)
        return loss

    def on_train_epoch_end(self) -> None:
        self.log("train/loss_epoch", self.train_loss.compute(), on_step=False, on_epoch=True)
        self.train_loss.reset()

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.val_scores.update(self.predict_probs(batch), batch["gt"].float() / 255)

    def on_validation_epoch_end(self) -> None:
        scores = self.val_scores.compute()
        self.val_scores.reset()
        self.log("val/maxF", scores["maxF"], prog_bar=True)
        self.log("val/MAE", scores["MAE"], prog_bar=True)

    def configure_optimizers(self) -> Any:
        return torch.optim.Adam(
            self.net.trainable_parameters(),
            lr=float(self.cfg.lr),
            weight_decay=float(self.cfg.weight_decay),
        )


def fit_decoder(
    net: SODNet, loader, steps: int, lr: float, device: torch.device | str, size: int
) -> list[float]:
    """A plain loop for probes and tests: ``steps`` Adam steps on the decoder. Returns losses."""
    inputs = SODInputs(size).to(device)
    opt = torch.optim.Adam(net.trainable_parameters(), lr=lr)
    net.train()
    losses: list[torch.Tensor] = []
    done = 0
    while done < steps:
        for batch in loader:
            batch = {k: v.to(device) for k, v in batch.items()}
            rgb, depth, gt = inputs(batch, train=True)
            loss = sod_loss(net(rgb, depth), gt)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.detach())
            done += 1
            if done >= steps:
                break
    return [float(v) for v in torch.stack(losses).cpu()] if losses else []


@torch.no_grad()
def score_loader(net: SODNet, loader, device, size: int) -> dict[str, float]:
    inputs = SODInputs(size).to(device)
    net.eval()
    scores = FastSODScores().to(device)
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        rgb, depth, gt = inputs(batch, train=False)
        scores.update(torch.sigmoid(net(rgb, depth)[0]), gt)
    return scores.compute()
