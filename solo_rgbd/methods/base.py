"""Base classes every method shares, on ``lightning.pytorch``.

A method is: config defaults + checks (``validate_kwargs``), modules, ``learnable_params``
(parameter groups as data), ``momentum_pairs`` (declarative (online, momentum) modules, for
:class:`BaseMomentumMethod`), and ``training_step``. Augmentation runs on the batch's device in
``on_after_batch_transfer`` (kornia, two paired views), outside autocast.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import lightning.pytorch as pl
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from solo_rgbd.augment.paired import PairedAugment, augment_config_from
from solo_rgbd.config import did_you_mean
from solo_rgbd.errors import ConfigError
from solo_rgbd.nn.backbone import Encoder
from solo_rgbd.nn.momentum import cosine_tau, momentum_update


def _check_keys(given: Mapping[str, Any], defaults: Mapping[str, Any], prefix: str) -> None:
    for key, value in given.items():
        if key not in defaults:
            raise ConfigError(
                f"unknown config key '{prefix}.{key}'."
                f"{did_you_mean(key, list(defaults))} Valid keys: {', '.join(defaults)}."
            )
        if isinstance(defaults[key], dict) and isinstance(value, Mapping):
            _check_keys(value, defaults[key], f"{prefix}.{key}")


def _merge(defaults: dict, given: Mapping) -> dict:
    out = dict(defaults)
    for key, value in given.items():
        out[key] = _merge(defaults[key], value) if isinstance(defaults.get(key), dict) else value
    return out


class BaseMethod(pl.LightningModule):
    """Shared machinery: config checks, backbones, optimiser and lr schedule, augmentation."""

    method_name: ClassVar[str] = "base"
    #: method_kwargs defaults; a key not in here is an error
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, cfg: DictConfig | dict) -> None:
        super().__init__()
        if not isinstance(cfg, DictConfig):  # e.g. load_from_checkpoint's saved hparams
            cfg = OmegaConf.create(cfg)
        self.cfg = cfg
        self.kwargs = self.validate_kwargs(cfg.get("method_kwargs") or {})
        self.save_hyperparameters({"cfg": OmegaConf.to_container(cfg, resolve=True)})
        self.augment = PairedAugment(augment_config_from(cfg.augmentations))
        self._channels_last = False

    # ----- config -------------------------------------------------------------------------
    @classmethod
    def validate_kwargs(cls, kwargs: Mapping[str, Any] | DictConfig) -> dict[str, Any]:
        """Fill defaults, refuse unknown keys, then run :meth:`check_kwargs`."""
        if isinstance(kwargs, DictConfig):
            kwargs = OmegaConf.to_container(kwargs, resolve=True)
        _check_keys(kwargs, cls.defaults, "method_kwargs")
        merged = _merge(cls.defaults, kwargs)
        cls.check_kwargs(merged)
        return merged

    @classmethod
    def check_kwargs(cls, kw: dict[str, Any]) -> None:
        """Raise :class:`ConfigError` naming ``method_kwargs.KEY`` for an invalid value."""

    @staticmethod
    def require(ok: bool, key: str, value: Any, what: str) -> None:
        if not ok:
            raise ConfigError(f"method_kwargs.{key} = {value!r} is invalid: {what}.")

    def planned_epochs(self) -> int:
        """Epochs of the run: trainer.max_epochs, or the method's own schedule."""
        epochs = self.cfg.trainer.get("max_epochs")
        if epochs is None:
            raise ConfigError(
                f"trainer.max_epochs is null and method '{self.method_name}' has no schedule "
                "of its own; set trainer.max_epochs=N."
            )
        return int(epochs)

    # ----- modules ------------------------------------------------------------------------
    def make_encoder(self, in_chans: int) -> Encoder:
        b = self.cfg.backbone
        return Encoder(str(b.name), in_chans, bool(b.pretrained), b.get("weights"))

    def export_encoders(self) -> dict[str, Encoder]:
        """The encoders the SOD head loads: {'rgb': ..., 'depth': ...}."""
        raise NotImplementedError

    @property
    def learnable_params(self) -> list[dict[str, Any]]:
        """Parameter groups: dicts with 'name', 'params' and optional 'lr'/'weight_decay'."""
        raise NotImplementedError

    # ----- optimisation -------------------------------------------------------------------
    @property
    def base_lr(self) -> float:
        return float(self.cfg.optimizer.lr)

    def steps_per_epoch(self) -> int:
        return max(
            1, int(self.trainer.estimated_stepping_batches) // max(1, self.trainer.max_epochs)
        )

    def lr_at(self, step: int) -> float:
        """Linear warmup then cosine decay (or constant) over the whole run."""
        opt = self.cfg.optimizer
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = int(float(opt.warmup_epochs) * self.steps_per_epoch())
        return warmup_cosine(step, total, warmup, self.base_lr, str(opt.scheduler))

    def configure_optimizers(self):
        opt = self.cfg.optimizer
        groups = []
        for group in self.learnable_params:
            g = {k: v for k, v in group.items() if k != "name"}
            g["params"] = [p for p in g["params"] if p.requires_grad]
            groups.append(g)
        wd = float(opt.weight_decay)
        if opt.name == "sgd":
            optimizer = torch.optim.SGD(
                groups, lr=self.base_lr, momentum=float(opt.momentum), weight_decay=wd
            )
        elif opt.name == "lars":
            from lightly.utils.lars import LARS

            optimizer = LARS(groups, lr=self.base_lr, momentum=float(opt.momentum), weight_decay=wd)
        else:
            raise ConfigError(f"optimizer.name '{opt.name}' is unknown; use sgd or lars.")
        base = self.base_lr
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: self.lr_at(step) / base if base > 0 else 0.0
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    # ----- data ---------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        self._channels_last = _want_channels_last(self.cfg, self.device)
        if self._channels_last:
            self.to(memory_format=torch.channels_last)

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """Two paired views, made on the batch's device (the GPU when training on one)."""
        if self.trainer is not None and self.trainer.training and "views" not in batch:
            views = self.augment(batch["rgb"], batch["depth"])
            if self._channels_last:
                views = [
                    tuple(t.contiguous(memory_format=torch.channels_last) for t in v) for v in views
                ]
            batch = {**batch, "views": views}
        return batch

    def should_log(self) -> bool:
        """True on the steps Lightning's logger writes (every ``log_every_n_steps``).

        Diagnostics are computed (and read to the host) on those steps only. The test mirrors
        Lightning's own: the batch counter is the same in every hook of one batch.
        """
        trainer = self._trainer
        if trainer is None:
            return False
        step = getattr(trainer.fit_loop.epoch_loop, "_batches_that_stepped", self.global_step)
        return (step + 1) % max(1, trainer.log_every_n_steps) == 0

    def log_scalars(self, values: Mapping[str, torch.Tensor | float], prog_bar=()) -> None:
        for name, value in values.items():
            self.log(
                name, value, prog_bar=name in prog_bar, on_step=True, on_epoch=False, batch_size=1
            )


class BaseMomentumMethod(BaseMethod):
    """Adds momentum (key) encoders: ``momentum_pairs`` and the tau schedule."""

    @property
    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        raise NotImplementedError

    def momentum_tau(self) -> float:
        m = self.kwargs["momentum"]
        if m["schedule"] == "constant":
            return float(m["base_tau"])
        total = int(self.trainer.estimated_stepping_batches) if self.trainer else 1
        return cosine_tau(self.global_step, total, float(m["base_tau"]), float(m["final_tau"]))

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """After the optimiser step: theta_k <- tau theta_k + (1 - tau) theta_q per pair."""
        pairs = self.momentum_pairs
        if not pairs:
            return
        tau = self.momentum_tau()
        for online, target in pairs:
            momentum_update(online, target, tau)
        if self.should_log():
            self.log_scalars({"momentum_tau": tau})


def warmup_cosine(step: int, total: int, warmup: int, lr: float, kind: str = "cosine") -> float:
    if warmup > 0 and step < warmup:
        return lr * (step + 1) / warmup
    if kind == "constant":
        return lr
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return lr * 0.5 * (1 + math.cos(math.pi * progress))


def _want_channels_last(cfg: DictConfig, device: torch.device) -> bool:
    setting = cfg.trainer.get("channels_last", "auto")
    if setting == "auto":
        return device.type == "cuda"
    return bool(setting)
