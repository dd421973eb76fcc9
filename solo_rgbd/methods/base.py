"""Base classes every method shares, on ``lightning.pytorch``.

A method is: config defaults + checks (``validate_kwargs``), modules, ``learnable_params``
(parameter groups as data), ``momentum_pairs`` (declarative (online, momentum) modules, for
:class:`BaseMomentumMethod`), and ``objective`` (the loss and its terms). Augmentation runs on
the batch's device in ``on_after_batch_transfer`` (``make_augment``), outside autocast.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from lightning.pytorch.utilities import rank_zero_warn
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError
from torch import nn

from solo_rgbd.augment.paired import PairedAugment, augment_config_from
from solo_rgbd.config import all_keys, did_you_mean
from solo_rgbd.errors import ConfigError
from solo_rgbd.methods.optim import ParamGroup, set_scheduled_lr
from solo_rgbd.methods.step_log import StepLogging
from solo_rgbd.nn.backbone import Encoder
from solo_rgbd.nn.lars import LARS
from solo_rgbd.nn.momentum import EMAUpdate, cosine_tau, warmup_cosine
from solo_rgbd.nn.queue import KeyQueue
from solo_rgbd.nn.shuffle_bn import shuffled_forward
from solo_rgbd.schema import AugmentationConfig


@dataclass
class MomentumKwargs:
    """Key encoders: ``base_tau`` -> ``final_tau`` with a cosine schedule (or constant)."""

    base_tau: float = 0.99
    final_tau: float = 1.0
    schedule: str = "cosine"  # cosine | constant (constant uses base_tau, e.g. 0.999)


@dataclass
class NoKwargs:
    """A method without settings of its own."""


def _kwargs_error(exc: Exception, schema: DictConfig) -> ConfigError:
    """OmegaConf's unknown-key or wrong-type error, as one paragraph naming the key."""
    key = f"method_kwargs.{getattr(exc, 'full_key', '') or ''}".rstrip(".")
    if isinstance(exc, ValidationError):
        return ConfigError(
            f"config key '{key}' has the wrong type: {str(exc).splitlines()[0]}. Set it to a "
            "value of the type its method's Kwargs dataclass declares."
        )
    valid = [f"method_kwargs.{k}" for k in all_keys(schema)]
    return ConfigError(
        f"unknown config key '{key}'.{did_you_mean(key, valid)} Valid keys: "
        f"{', '.join(k.removeprefix('method_kwargs.') for k in valid)}."
    )


def check_momentum(kw: Mapping[str, Any], require) -> None:
    """method_kwargs.momentum: 0 <= base_tau <= final_tau <= 1, cosine or constant."""
    m = kw["momentum"]
    for key in ("base_tau", "final_tau"):
        require(0 <= float(m[key]) <= 1, f"momentum.{key}", m[key], "must be in [0, 1]")
    require(
        float(m["base_tau"]) <= float(m["final_tau"]) or m["schedule"] == "constant",
        "momentum.final_tau",
        m["final_tau"],
        f"must be >= momentum.base_tau ({m['base_tau']}) for the cosine schedule",
    )
    require(
        m["schedule"] in ("cosine", "constant"),
        "momentum.schedule",
        m["schedule"],
        "use cosine or constant",
    )


class BaseMethod(StepLogging):
    """Shared machinery: config checks, backbones, optimiser and lr schedule, augmentation,
    and per-step logging (:class:`~solo_rgbd.methods.step_log.StepLogging`)."""

    method_name: ClassVar[str] = "base"
    #: the schema and defaults of method_kwargs (a dataclass); a key not in it is an error
    Kwargs: ClassVar[type] = NoKwargs
    #: some parameters get no gradient in some steps (DDP then needs find_unused_parameters)
    has_unused_parameters: bool = False
    #: the method's kwargs fix its epochs (stages); trainer.max_epochs may only cut them short
    has_own_schedule: ClassVar[bool] = False

    def __init__(self, cfg: DictConfig | dict) -> None:
        super().__init__()
        if not isinstance(cfg, DictConfig):  # e.g. load_from_checkpoint's saved hparams
            cfg = OmegaConf.create(cfg)
        self.cfg = cfg
        self.kwargs = self.validate_kwargs(cfg.get("method_kwargs") or {})
        self.save_hyperparameters({"cfg": OmegaConf.to_container(cfg, resolve=True)})
        self.augment = self.make_augment(augment_config_from(cfg.augmentations))
        self._channels_last = False
        self._horizon: dict[str, int] | None = None
        self._log_row: dict[str, Any] = {}  # StepLogging's row of this step
        self._log_now = False
        #: names in the rows that the progress bar shows
        self.progress_keys: set[str] = set()
        #: the current step's loss terms (detached), named in non-finite errors
        self.loss_terms: dict[str, torch.Tensor] = {}

    def make_augment(self, cfg: AugmentationConfig) -> PairedAugment:
        """``batch["views"]``: two global crops (multi-crop: ``PairedAugment(cfg, k, ...)``)."""
        return PairedAugment(cfg)

    # ----- the step -----------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        """The method's :meth:`objective`; its ``loss_*`` terms are kept (detached) as
        :attr:`loss_terms`, which the non-finite guard names."""
        out = self.objective(batch, batch_idx)
        if not isinstance(out, Mapping):
            return out
        self.loss_terms = {k: v.detach() for k, v in out.items() if k.startswith("loss_")}
        return out["loss"]

    def objective(self, batch: dict, batch_idx: int) -> torch.Tensor | Mapping[str, torch.Tensor]:
        """The loss of a batch (``batch["views"]``: the augmented views): a tensor, or
        ``{"loss": total, "loss_<term>": term, ...}``."""
        raise NotImplementedError

    # ----- config -------------------------------------------------------------------------
    @classmethod
    def validate_kwargs(cls, kwargs: Mapping[str, Any] | DictConfig) -> dict[str, Any]:
        """Fill defaults from :attr:`Kwargs`, refuse unknown keys and wrong types, then run
        :meth:`check_kwargs` (ranges and rules across keys)."""
        if isinstance(kwargs, DictConfig):
            kwargs = OmegaConf.to_container(kwargs, resolve=True)
        schema = OmegaConf.structured(cls.Kwargs)
        try:
            merged = OmegaConf.to_container(OmegaConf.merge(schema, kwargs))
        except (ConfigAttributeError, ConfigKeyError, ValidationError) as exc:
            raise _kwargs_error(exc, schema) from None
        cls.check_kwargs(merged)
        return merged

    @classmethod
    def default_kwargs(cls) -> dict[str, Any]:
        return OmegaConf.to_container(OmegaConf.structured(cls.Kwargs))

    @classmethod
    def check_kwargs(cls, kw: dict[str, Any]) -> None:
        """Raise :class:`ConfigError` naming ``method_kwargs.KEY`` for an invalid value."""

    @staticmethod
    def require(ok: bool, key: str, value: Any, what: str) -> None:
        if not ok:
            raise ConfigError(f"method_kwargs.{key} = {value!r} is invalid: {what}.")

    def schedule_epochs(self) -> int:
        """The epochs the lr and momentum schedules span (a staged method: its stages)."""
        return self.planned_epochs()

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
    def learnable_params(self) -> list[ParamGroup]:
        """The method's parameter groups (:class:`ParamGroup`)."""
        raise NotImplementedError

    # ----- optimisation -------------------------------------------------------------------
    @property
    def base_lr(self) -> float:
        lr = self.cfg.optimizer.get("lr")
        if lr is None:
            raise ConfigError(
                f"optimizer.lr is null and method '{self.method_name}' sets no lr of its own; "
                "set optimizer.lr=VALUE."
            )
        return float(lr)

    def schedule_horizon(self) -> dict[str, int]:
        """Optimizer steps per epoch and in the whole run, fixed when training starts.

        lr and momentum tau are functions of ``global_step`` and this horizon (not of
        Lightning's estimate), and the horizon is saved in checkpoints.
        """
        if self._horizon is None:
            per_epoch = max(
                1, int(self.trainer.num_training_batches) // self.trainer.accumulate_grad_batches
            )
            self._horizon = {
                "steps_per_epoch": per_epoch,
                "total_steps": per_epoch * self.schedule_epochs(),
            }
        return self._horizon

    def steps_per_epoch(self) -> int:
        return self.schedule_horizon()["steps_per_epoch"]

    def lr_at(self, step: int) -> float:
        """Linear warmup then cosine decay (or constant) over the whole run."""
        opt = self.cfg.optimizer
        total = self.schedule_horizon()["total_steps"]
        warmup = int(float(opt.warmup_epochs) * self.steps_per_epoch())
        return warmup_cosine(step, total, warmup, self.base_lr, str(opt.scheduler))

    def configure_optimizers(self):
        opt = self.cfg.optimizer
        base = self.base_lr
        wd = float(opt.weight_decay)
        exclude = bool(opt.get("exclude_bias_and_norm", False))
        groups = []
        for group in map(ParamGroup.of, self.learnable_params):
            g = group.torch_group(base)
            params = [p for p in g["params"] if p.requires_grad]
            if exclude:  # biases and norm scales/shifts (1-d) get no weight decay
                groups.append({**g, "params": [p for p in params if p.ndim > 1]})
                groups.append(
                    {**g, "params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}
                )
            else:
                groups.append({**g, "params": params})
        groups = [g for g in groups if g["params"]]
        if opt.name == "sgd":
            return torch.optim.SGD(groups, lr=base, momentum=float(opt.momentum), weight_decay=wd)
        if opt.name == "lars":  # lightly's rule, without its two host syncs per parameter
            return LARS(groups, lr=base, momentum=float(opt.momentum), weight_decay=wd)
        raise ConfigError(f"optimizer.name '{opt.name}' is unknown; use sgd or lars.")

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None) -> None:
        """Set this step's lr (a function of the step), step, then :meth:`after_optimizer_step`.

        Runs once per optimizer step, so with gradient accumulation the momentum encoders move
        once per update, not once per micro-batch.
        """
        set_scheduled_lr(optimizer, self.lr_at(self.global_step))
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        self.after_optimizer_step()

    def after_optimizer_step(self) -> None:
        """Hook for updates that follow the optimizer (momentum encoders)."""

    # ----- checkpoints --------------------------------------------------------------------
    def on_train_start(self) -> None:
        saved, self._horizon = self._horizon, None
        now = self.schedule_horizon()
        if saved is not None and saved != now:
            rank_zero_warn(
                f"the schedule horizon changed on resume: the checkpoint planned "
                f"{saved['total_steps']} optimizer steps ({saved['steps_per_epoch']} per epoch), "
                f"this config plans {now['total_steps']} ({now['steps_per_epoch']} per epoch); "
                "lr and momentum follow the new horizon from here on."
            )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["schedule_horizon"] = dict(self.schedule_horizon())
        names = {id(m): n for n, m in self.named_modules()}
        checkpoint["encoders"] = {
            name: {
                "prefix": f"{names[id(enc)]}.model.",
                "backbone": enc.name,
                "in_chans": enc.in_chans,
            }
            for name, enc in self.export_encoders().items()
        }
        checkpoint["state_roles"] = self.state_roles()

    @property
    def run_kind(self) -> str:
        """A resume checkpoint must come from a run of this method."""
        return self.method_name

    def state_roles(self) -> dict[str, list[str]]:
        """Module prefixes of the state that is not trained weights (``solo-rgbd ckpt info``):
        the momentum copies and the queues."""
        names = {id(m): n for n, m in self.named_modules()}
        try:
            pairs = getattr(self, "momentum_pairs", [])
        except NotImplementedError:
            pairs = []
        return {
            "momentum": sorted(names[id(target)] for _, target in pairs if id(target) in names),
            "queues": sorted(n for n, m in self.named_modules() if isinstance(m, KeyQueue)),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._horizon = checkpoint.get("schedule_horizon")

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


def check_shuffle_bn(kw: Mapping[str, Any], require) -> None:
    require(
        int(kw["shuffle_bn_groups"]) >= 1,
        "shuffle_bn_groups",
        kw["shuffle_bn_groups"],
        "must be >= 1 (the BN groups of the key batch on one device)",
    )


class BaseMomentumMethod(BaseMethod):
    """Adds momentum (key) encoders: ``momentum_pairs``, the tau schedule and shuffle-BN."""

    @torch.no_grad()
    def key_forward(self, fn, *inputs: torch.Tensor):
        """``fn(*inputs)`` on the key side: with shuffle-BN when ``method_kwargs.shuffle_bn``
        (across ranks under DDP, else in ``shuffle_bn_groups`` groups on this device)."""
        if self.kwargs.get("shuffle_bn"):
            return shuffled_forward(fn, *inputs, groups=int(self.kwargs["shuffle_bn_groups"]))
        return fn(*inputs)

    @property
    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        raise NotImplementedError

    def momentum_tau(self) -> float:
        m = self.kwargs["momentum"]
        if m["schedule"] == "constant":
            return float(m["base_tau"])
        total = self.schedule_horizon()["total_steps"]
        return cosine_tau(self.global_step, total, float(m["base_tau"]), float(m["final_tau"]))

    def after_optimizer_step(self) -> None:
        """theta_k <- tau theta_k + (1 - tau) theta_q per pair, once per optimizer step."""
        pairs = self.momentum_pairs
        if not pairs:
            return
        if "_ema" not in self.__dict__:
            self._ema = EMAUpdate()  # one fused lerp over every pair's parameters
        tau = self.momentum_tau()
        self._ema(pairs, tau)
        if self.should_log():
            self.log("momentum_tau", tau)


def _want_channels_last(cfg: DictConfig, device: torch.device) -> bool:
    setting = cfg.trainer.get("channels_last", "auto")
    if setting == "auto":
        return device.type == "cuda"
    return bool(setting)
