"""Downstream numbers during pretraining: the RGB-D counterpart of solo-learn's online probe.

- :class:`OnlineSODProbe`: a light dense head (the SOD decoder at a small width) trained on
  *detached* encoder features of labelled batches at every step, scored (maxF, MAE) on the
  validation split at the end of every epoch;
- :class:`FrozenDecoderProbe`: every N epochs, a fresh decoder trained for a fixed budget on
  frozen copies of the encoders, scored on the validation split.

Both leave the pretraining untouched: features come from ``torch.no_grad`` passes with the
encoders in eval mode (BatchNorm statistics are not updated), and each probe has its own
optimiser. Both need labelled data (``data.val_fraction > 0`` and a GT folder).
"""

from __future__ import annotations

import copy

import lightning.pytorch as pl
import torch
import torch.nn.functional as F

from solo_rgbd.augment.paired import EvalTransform
from solo_rgbd.data.sources import index_loader
from solo_rgbd.errors import ConfigError
from solo_rgbd.evaluation.fast import FastSODScores
from solo_rgbd.losses.sod import sod_loss
from solo_rgbd.nn.streams import Streams, network_pair
from solo_rgbd.tasks.sod.model import SODDecoder, SODNet
from solo_rgbd.tasks.sod.module import fit_decoder, score_loader


def _require_labels(trainer: pl.Trainer, who: str) -> tuple:
    return _labels_of(trainer.datamodule, who)


def _labels_of(dm, who: str) -> tuple:
    train, val = getattr(dm, "train_cache", None), getattr(dm, "val_cache", None)
    if train is None or val is None or not train.has_gt:
        raise ConfigError(
            f"probes.{who}.enabled=true needs labelled data and a validation split: a dataset "
            "with a GT folder and data.val_fraction > 0 (e.g. data.val_fraction=0.1)."
        )
    return train, val


class _EncodersFrozenView:
    """Run the encoders' stages without gradients and without touching BatchNorm stats."""

    def __init__(self, encoders: dict) -> None:
        self.encoders = encoders

    @torch.no_grad()
    def __call__(self, rgb: torch.Tensor, depth: torch.Tensor):
        modes = {k: e.training for k, e in self.encoders.items()}
        for e in self.encoders.values():
            e.eval()
        try:
            inputs = Streams.of_names(self.encoders).inputs(rgb, depth)
            stages = {k: self.encoders[k].stages(x) for k, x in inputs.items()}
            return network_pair(stages)  # (rgb, depth), or (rgbd, None) for early fusion
        finally:
            for k, e in self.encoders.items():
                e.train(modes[k])


class OnlineSODProbe(pl.Callback):
    def __init__(self, size: int, lr: float = 1e-3, dim: int = 16, every_n_steps: int = 1):
        self.size, self.lr, self.dim, self.every = size, lr, dim, max(1, every_n_steps)
        self.transform = EvalTransform(size)
        self.head: SODDecoder | None = None
        self._restored: dict | None = None

    # the head and its optimizer are part of the run: saved in and restored from checkpoints
    def state_dict(self) -> dict:
        if self.head is None:
            return {}
        return {"head": self.head.state_dict(), "opt": self.opt.state_dict()}

    def load_state_dict(self, state_dict: dict) -> None:
        self._restored = state_dict or None

    def _build(self, encoders: dict, device) -> None:
        first, second = network_pair(encoders)
        depth = second.stage_channels if second is not None else None
        self.head = SODDecoder(first.stage_channels, depth, self.dim).to(device)
        self.opt = torch.optim.Adam(self.head.parameters(), lr=self.lr)
        self.transform = self.transform.to(device)
        if self._restored is not None:
            self.head.load_state_dict(self._restored["head"])
            self.opt.load_state_dict(self._restored["opt"])
            self._restored = None

    def _inputs(self, batch: dict):
        rgb, depth = self.transform(batch["rgb"], batch["depth"])
        gt = F.interpolate(
            batch["gt"].float() / 255, size=rgb.shape[-2:], mode="bilinear", align_corners=False
        )
        return rgb, depth, gt

    def step(self, encoders: dict, batch: dict) -> torch.Tensor:
        """One optimiser step of the head on detached features; returns the loss."""
        if self.head is None:
            self._build(encoders, batch["rgb"].device)
        rgb, depth, gt = self._inputs(batch)
        feats_rgb, feats_depth = _EncodersFrozenView(encoders)(rgb, depth)
        self.head.train()
        with torch.autocast(device_type=rgb.device.type, enabled=False):
            loss = sod_loss(self.head(feats_rgb, feats_depth, rgb.shape[-2:])[:1], gt)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.detach()

    @torch.no_grad()
    def evaluate(self, encoders: dict, loader, device) -> dict[str, float]:
        scores = FastSODScores().to(device)
        self.head.eval()
        view = _EncodersFrozenView(encoders)
        for batch in loader:
            batch = {k: v.to(device) for k, v in batch.items()}
            rgb, depth, gt = self._inputs(batch)
            logits = self.head(*view(rgb, depth), rgb.shape[-2:])[0]
            scores.update(torch.sigmoid(logits.float()), gt)
        return scores.compute()

    def check_data(self, datamodule) -> None:
        """Before anything is written: the data has labels and a validation split."""
        _labels_of(datamodule, "online")

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        _require_labels(trainer, "online")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % self.every == 0 and "gt" in batch:
            loss = self.step(pl_module.export_encoders(), batch)
            if pl_module.should_log():
                pl_module.log("probe/loss", loss.detach())

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.head is None:
            return
        _, val = _require_labels(trainer, "online")
        loader = index_loader(val, 32, False, False)
        scores = self.evaluate(pl_module.export_encoders(), loader, pl_module.device)
        pl_module.log("probe/maxF", scores["maxF"], prog_bar=True)
        pl_module.log("probe/MAE", scores["MAE"])


class FrozenDecoderProbe(pl.Callback):
    def __init__(
        self,
        size: int,
        every_n_epochs: int = 5,
        steps: int = 100,
        lr: float = 1e-3,
        batch_size: int = 16,
        dim: int = 32,
    ) -> None:
        self.size, self.every, self.steps, self.lr = size, max(1, every_n_epochs), steps, lr
        self.batch_size, self.dim = batch_size, dim

    def check_data(self, datamodule) -> None:
        """Before anything is written: the data has labels and a validation split."""
        _labels_of(datamodule, "frozen")

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        _require_labels(trainer, "frozen")

    def run(self, encoders: dict, train, val, device) -> dict[str, float]:
        first, second = network_pair(encoders)
        depth = copy.deepcopy(second) if second is not None else None
        net = SODNet(copy.deepcopy(first), depth, self.dim, freeze=True).to(device)
        bs = min(self.batch_size, len(train))
        with torch.autocast(device_type=torch.device(device).type, enabled=False):
            fit_decoder(
                net, index_loader(train, bs, True, True), self.steps, self.lr, device, self.size
            )
            return score_loader(net, index_loader(val, 32, False, False), device, self.size)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        last = trainer.current_epoch + 1 >= (trainer.max_epochs or 0)
        if (trainer.current_epoch + 1) % self.every and not last:
            return
        train, val = _require_labels(trainer, "frozen")
        scores = self.run(pl_module.export_encoders(), train, val, pl_module.device)
        pl_module.log_dict({"frozen_probe/maxF": scores["maxF"], "frozen_probe/MAE": scores["MAE"]})


def probes_from_config(cfg) -> list[pl.Callback]:
    probes = cfg.get("probes")
    size = int(cfg.augmentations.crop_size)
    out: list[pl.Callback] = []
    if probes and probes.online.enabled:
        o = probes.online
        out.append(OnlineSODProbe(size, float(o.lr), int(o.dim), int(o.every_n_steps)))
    if probes and probes.frozen.enabled:
        f = probes.frozen
        out.append(
            FrozenDecoderProbe(
                size,
                int(f.every_n_epochs),
                int(f.steps),
                float(f.lr),
                int(f.batch_size),
                int(f.dim),
            )
        )
    return out
