"""The method template, level 1 of 2: what every method has (docs/methods.md is its contract).

A method is one class, registered with ``@register_method("name")``:

- ``Kwargs``: a dataclass, the schema and defaults of ``method_kwargs`` (a key not in it is an
  error); ``check_kwargs`` for ranges and rules across keys;
- per stream ``s`` (``rgb`` and ``depth``; one 4-channel ``rgbd`` stream for early fusion; or
  one modality, from ``method_kwargs.rgbd_mode``) this class builds an encoder
  ``encoders[s]`` and a projector ``projectors[s]`` (:meth:`make_projector`), and optionally a
  predictor ``predictors[s]`` (:meth:`make_predictor`); the method builds its other modules
  in ``__init__`` after ``super().__init__(cfg)``;
- ``objective(batch, batch_idx)``: the loss of a batch (``batch["views"]``: the augmented
  views ``[(rgb, depth), ...]``, made on the batch's device; ``batch["index"]`` (B,) the
  samples' ids), or ``{"loss": total, "loss_<term>": term, ...}``. A method whose loss is a
  sum over streams implements :meth:`stream_loss` instead.

Per-stream data is a dict ``{stream: tensor}`` everywhere. The template does the rest:
parameter groups (:attr:`learnable_params`), the optimizer and the lr of each step (a
function of the step, or of a :class:`~solo_rgbd.methods.staged.StagedSchedule`:
:meth:`use_stages`), augmentation on the device, checkpoint metadata, and per-step logging:
``self.log`` / ``self.log_dict`` as in any LightningModule, kept off the host between logging
steps (:meth:`should_log`). :class:`~solo_rgbd.methods.momentum.MomentumMethod` (level 2) adds
momentum copies, shuffle-BN and queues.

The file is over the project's 400-line guideline: the template is one contract, and logging
and schedules belong to it (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_warn
from omegaconf import DictConfig, OmegaConf
from torch import nn

from solo_rgbd.augment.paired import PairedAugment, augment_config_from
from solo_rgbd.errors import ConfigError
from solo_rgbd.methods.diagnostics import grad_norms
from solo_rgbd.methods.kwargs import validate_kwargs
from solo_rgbd.methods.optim import ParamGroup, build_optimizer, set_scheduled_lr
from solo_rgbd.methods.staged import StagedSchedule
from solo_rgbd.nn.backbone import Encoder
from solo_rgbd.nn.heads import mocov2_projector
from solo_rgbd.nn.momentum import warmup_cosine
from solo_rgbd.nn.queue import KeyQueue
from solo_rgbd.nn.streams import MODES, Streams
from solo_rgbd.schema import AugmentationConfig
from solo_rgbd.utils.console import say

RGBD_MODES = tuple(MODES)


@dataclass
class StreamKwargs:
    rgbd_mode: str = "two_stream"  # two_stream | early_fusion | rgb_only | depth_only
    proj_hidden_dim: int = 2048
    proj_output_dim: int = 128


class BaseMethod(pl.LightningModule):
    """Every method: per-stream encoders and projectors, config checks, optimizer and lr
    schedule, augmentation, checkpoint metadata and per-step logging (module doc)."""

    method_name: ClassVar[str] = "base"
    #: the schema and defaults of method_kwargs (a dataclass); a key not in it is an error
    Kwargs: ClassVar[type] = StreamKwargs
    #: the predictors keep their lr; the rest follow the schedule (SimSiam's fixed predictor lr)
    predictor_static_lr: ClassVar[bool] = False
    #: some parameters get no gradient in some steps (DDP then needs find_unused_parameters)
    has_unused_parameters: bool = False
    #: the kwargs fix the epochs (:meth:`use_stages`): compare sets no trainer.max_epochs
    has_own_schedule: ClassVar[bool] = False

    def __init__(self, cfg: DictConfig | dict) -> None:
        super().__init__()
        if not isinstance(cfg, DictConfig):  # e.g. load_from_checkpoint's saved hparams
            cfg = OmegaConf.create(cfg)
        self.cfg = cfg
        self.kwargs = self.validate_kwargs(cfg.get("method_kwargs") or {})
        self.save_hyperparameters({"cfg": OmegaConf.to_container(cfg, resolve=True)})
        self.augment = self.make_augment(augment_config_from(cfg.augmentations))
        #: the run's stages, when the method trains in stages (:meth:`use_stages`)
        self.staged: StagedSchedule | None = None
        self._channels_last = False
        self._horizon: dict[str, int] | None = None
        self._log_row: dict[str, Any] = {}  # this step's logged values (device tensors)
        self._log_now = False
        #: names in the rows that the progress bar shows
        self.progress_keys: set[str] = set()
        #: the current step's loss terms (detached), named in non-finite errors
        self.loss_terms: dict[str, torch.Tensor] = {}
        # theta^s and phi^s (and a predictor) per stream, in this order (the initial weights)
        self.streams = Streams.of_mode(str(self.kwargs.get("rgbd_mode", "two_stream")))
        self.encoders = nn.ModuleDict(
            {s: self.make_encoder(c) for s, c in self.streams.channels.items()}
        )
        projectors, predictors = {}, {}
        for s, encoder in self.encoders.items():
            projectors[s] = self.make_projector(encoder.num_features)
            predictors[s] = self.make_predictor(int(self.kwargs.get("proj_output_dim", 0)))
        self.projectors = nn.ModuleDict(projectors)
        self.predictors = nn.ModuleDict({s: p for s, p in predictors.items() if p is not None})
        self._register_load_state_dict_pre_hook(_rename_legacy_keys)

    # ----- what a method may provide --------------------------------------------------------
    def make_encoder(self, in_chans: int) -> Encoder:
        b = self.cfg.backbone
        return Encoder(str(b.name), in_chans, bool(b.pretrained), b.get("weights"))

    def make_projector(self, in_dim: int) -> nn.Module:
        """phi^s on pooled features (B, in_dim) -> (B, proj_output_dim): MoCo v2's MLP."""
        kw = self.kwargs
        return mocov2_projector(in_dim, int(kw["proj_hidden_dim"]), int(kw["proj_output_dim"]))

    def make_predictor(self, dim: int) -> nn.Module | None:
        """A predictor on the ``dim``-wide projection (SimSiam, BYOL); None: no predictor."""
        return None

    def make_augment(self, cfg: AugmentationConfig) -> PairedAugment:
        """``batch["views"]``: two global crops (multi-crop: ``PairedAugment(cfg, k, ...)``)."""
        return PairedAugment(cfg)

    def objective(self, batch: dict, batch_idx: int) -> torch.Tensor | Mapping[str, torch.Tensor]:
        """The loss of a batch; by default the sum of :meth:`stream_loss` over the streams."""
        (rgb1, depth1), (rgb2, depth2) = batch["views"]
        x1, x2 = self.streams.inputs(rgb1, depth1), self.streams.inputs(rgb2, depth2)
        loss = torch.zeros((), device=rgb1.device)
        logs: dict[str, Any] = {}
        for s in self.streams:
            l_s, extra = self.stream_loss(s, x1[s], x2[s])
            loss = loss + l_s
            logs[f"loss_{s}"] = l_s.detach()
            logs.update({f"{k}_{s}": v for k, v in extra.items()})
        if self.should_log():
            self.log("loss", loss.detach(), prog_bar=True)
            self.log_dict(logs)
        return {"loss": loss, **{k: v for k, v in logs.items() if k.startswith("loss_")}}

    def stream_loss(
        self, stream: str, x1: torch.Tensor, x2: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One stream's loss on its two views (B, C, H, W), and extra values to log."""
        raise NotImplementedError(
            f"{type(self).__name__} implements neither objective() nor stream_loss()"
        )

    # ----- helpers a method may call --------------------------------------------------------
    def project(self, stream: str, x: torch.Tensor) -> torch.Tensor:
        """phi^s(pool(theta^s(x))): the projection (B, D) of one stream's view."""
        return self.projectors[stream](Encoder.pool(self.encoders[stream](x)))

    def predict(self, stream: str, z: torch.Tensor) -> torch.Tensor:
        """The predictor on a projection; the projection itself without one."""
        return self.predictors[stream](z) if stream in self.predictors else z

    def use_stages(self) -> StagedSchedule:
        """Train in the stages of the kwargs (``schedule``, ``stage1_epochs``, ``stage1_lr``,
        ...): they then fix the epochs, the lr of each step and :attr:`stage`."""
        opt = self.cfg.optimizer
        if opt.get("lr") is not None:
            raise ConfigError(
                f"optimizer.lr={opt.lr} is not used by method '{self.method_name}', whose lr "
                "follows its schedule: set method_kwargs.stage1_lr and method_kwargs.stage2_lr "
                "(two_stage, intra_only) or method_kwargs.one_stage_lr (one_stage) instead, and "
                "drop optimizer.lr."
            )
        self.staged = StagedSchedule.from_kwargs(
            self.kwargs, float(opt.warmup_epochs), str(opt.scheduler)
        )
        return self.staged

    @property
    def stage(self) -> int:
        """The stage's terms at the current epoch (1: the first stage's; a method without
        stages: always 1)."""
        return self.staged.terms_at_epoch(self.current_epoch) if self.staged else 1

    # ----- the step -------------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        """:meth:`objective`; its ``loss_*`` terms are kept (detached) as :attr:`loss_terms`,
        which the non-finite guard names."""
        out = self.objective(batch, batch_idx)
        if not isinstance(out, Mapping):
            return out
        self.loss_terms = {k: v.detach() for k, v in out.items() if k.startswith("loss_")}
        return out["loss"]

    # ----- config ---------------------------------------------------------------------------
    @classmethod
    def validate_kwargs(cls, kwargs: Mapping[str, Any] | DictConfig) -> dict[str, Any]:
        """Fill defaults from :attr:`Kwargs`, refuse unknown keys and wrong types, then run
        :meth:`check_kwargs` (ranges and rules across keys)."""
        merged = validate_kwargs(cls.Kwargs, kwargs)
        cls.check_kwargs(merged)
        return merged

    @classmethod
    def default_kwargs(cls) -> dict[str, Any]:
        return OmegaConf.to_container(OmegaConf.structured(cls.Kwargs))

    @classmethod
    def check_kwargs(cls, kw: dict[str, Any]) -> None:
        """Raise :class:`ConfigError` naming ``method_kwargs.KEY`` for an invalid value."""
        if "rgbd_mode" in kw:
            mode = kw["rgbd_mode"]
            cls.require(mode in RGBD_MODES, "rgbd_mode", mode, f"use one of {RGBD_MODES}")

    @staticmethod
    def require(ok: bool, key: str, value: Any, what: str) -> None:
        if not ok:
            raise ConfigError(f"method_kwargs.{key} = {value!r} is invalid: {what}.")

    # ----- epochs and lr --------------------------------------------------------------------
    def planned_epochs(self) -> int:
        """Epochs of the run: trainer.max_epochs, or the stages' (which max_epochs may only
        cut short)."""
        epochs = self.cfg.trainer.get("max_epochs")
        if self.staged is not None:
            cap = None if epochs is None else int(epochs)
            epochs, warning = self.staged.epochs_to_run(cap, self.method_name)
            if warning:
                rank_zero_warn(warning)
            return epochs
        if epochs is None:
            raise ConfigError(
                f"trainer.max_epochs is null and method '{self.method_name}' has no schedule "
                "of its own; set trainer.max_epochs=N."
            )
        return int(epochs)

    def schedule_epochs(self) -> int:
        """The epochs the lr and momentum schedules span (a staged method: all its stages)."""
        return self.staged.epochs if self.staged is not None else self.planned_epochs()

    @property
    def base_lr(self) -> float:
        if self.staged is not None:
            return self.staged.base_lr
        lr = self.cfg.optimizer.get("lr")
        if lr is None:
            raise ConfigError(
                f"optimizer.lr is null and method '{self.method_name}' sets no lr of its own; "
                "set optimizer.lr=VALUE."
            )
        return float(lr)

    def schedule_horizon(self) -> dict[str, int]:
        """Optimizer steps per epoch and in the whole run, fixed when training starts: lr and
        momentum are functions of ``global_step`` and this horizon, saved in checkpoints."""
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
        """Linear warmup then cosine decay (or constant) over the run; each stage its own."""
        if self.staged is not None:
            return self.staged.lr_at(step, self.steps_per_epoch())
        opt = self.cfg.optimizer
        total = self.schedule_horizon()["total_steps"]
        warmup = int(float(opt.warmup_epochs) * self.steps_per_epoch())
        return warmup_cosine(step, total, warmup, self.base_lr, str(opt.scheduler))

    # ----- parameters and optimisation ------------------------------------------------------
    @property
    def learnable_params(self) -> list[ParamGroup]:
        """One group per stream (encoder and projector), one per predictor."""
        groups = [
            ParamGroup(s, [*e.parameters(), *self.projectors[s].parameters()])
            for s, e in self.encoders.items()
        ]
        for s, predictor in self.predictors.items():
            static = bool(self.predictor_static_lr)
            groups.append(ParamGroup(f"{s}_predictor", [*predictor.parameters()], static_lr=static))
        return groups

    def export_encoders(self) -> dict[str, Encoder]:
        """The encoders a task loads: {stream: Encoder}."""
        return dict(self.encoders.items())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return build_optimizer(self.learnable_params, self.cfg.optimizer, self.base_lr)

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None) -> None:
        """Set this step's lr, step, then :meth:`after_optimizer_step` (once per optimizer
        step: with gradient accumulation the momentum encoders move once per update)."""
        set_scheduled_lr(optimizer, self.lr_at(self.global_step))
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        self.after_optimizer_step()

    def after_optimizer_step(self) -> None:
        """Updates that follow the optimizer (the momentum encoders)."""

    def on_before_optimizer_step(self, optimizer) -> None:
        """Logging steps: the gradient norm reaching each encoder (is the weak modality
        learning?), and each module of :meth:`diagnosed_modules`."""
        if self.should_log():
            self.log_dict(grad_norms(self.diagnosed_modules()))

    def diagnosed_modules(self) -> dict[str, nn.Module]:
        """Modules whose gradient norm is logged as ``grad_norm_<name>``."""
        return {f"{s}_encoder": e for s, e in self.encoders.items()}

    # ----- checkpoints ----------------------------------------------------------------------
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

    def on_train_epoch_start(self) -> None:
        if self.staged is not None and self.current_epoch in self.staged.switch_epochs():
            say(
                f"{self.method_name}: stage 2 (IntraCLM + InterCLM) starts at epoch "
                f"{self.current_epoch}, step {self.global_step}"
            )
            self.log("stage_switch_step", float(self.global_step))  # the report's marker

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

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._horizon = checkpoint.get("schedule_horizon")

    @property
    def run_kind(self) -> str:
        """A resume checkpoint must come from a run of this method."""
        return self.method_name

    def state_roles(self) -> dict[str, list[str]]:
        """Module prefixes of the state that is not trained weights (``solo-rgbd ckpt info``):
        momentum copies (:class:`~solo_rgbd.methods.momentum.MomentumMethod`) and queues."""
        return {
            "momentum": [],
            "queues": sorted(n for n, m in self.named_modules() if isinstance(m, KeyQueue)),
        }

    # ----- data -----------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        setting = self.cfg.trainer.get("channels_last", "auto")
        on = self.device.type == "cuda" if setting == "auto" else bool(setting)
        self._channels_last = on
        if on:
            self.to(memory_format=torch.channels_last)

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """The paired views, made on the batch's device (the GPU when training on one)."""
        if self.trainer is not None and self.trainer.training and "views" not in batch:
            views = self.augment(batch["rgb"], batch["depth"])
            if self._channels_last:
                views = [
                    tuple(t.contiguous(memory_format=torch.channels_last) for t in v) for v in views
                ]
            batch = {**batch, "views": views}
        return batch

    # ----- per-step logging -----------------------------------------------------------------
    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        every = max(1, int(self.trainer.log_every_n_steps))
        self._log_now = (self.global_step + 1) % every == 0

    def should_log(self) -> bool:
        """True on the steps whose metrics are written (every ``log_every_n_steps``); compute
        diagnostics (and read them to the host) on those steps only."""
        return self._log_now

    def log(
        self,
        name: str,
        value: Any,
        prog_bar: bool = False,
        logger: bool | None = None,
        on_step: bool | None = None,
        on_epoch: bool | None = None,
        **kwargs: Any,
    ) -> None:
        """Lightning's ``self.log`` (and so ``self.log_dict``), except that a value logged per
        step while training goes into this step's row, which the engine's MetricsWriter writes
        to the run's loggers on logging steps and shows on the bar (``prog_bar``) without
        reading a tensor to the host in between. An ``on_epoch`` aggregate, a synced value,
        ``logger=False`` or anything logged outside training is Lightning's own."""
        try:
            trainer: pl.Trainer | None = self.trainer
        except RuntimeError:  # not attached (a method driven by hand, as in tests)
            trainer = None
        per_step = on_step is not False and not on_epoch and logger is not False
        if per_step and not kwargs.get("sync_dist") and (trainer is None or trainer.training):
            self._log_row[name] = value
            if prog_bar:
                self.progress_keys.add(name)
            return
        super().log(name, value, prog_bar, logger, on_step, on_epoch, **kwargs)

    def pop_log_row(self) -> dict[str, Any]:
        """This step's logged values (device tensors), read once by the engine."""
        row, self._log_row = self._log_row, {}
        return row


def _rename_legacy_keys(state_dict: dict, prefix: str, *_args: Any) -> None:
    """Old checkpoints kept a stream's projector and predictor under ``heads.<s>.`` and the
    momentum projector under ``heads_k.<s>.``: rename them in place before loading."""
    for key in [k for k in state_dict if k.startswith(prefix + "heads")]:
        parts = key[len(prefix) :].split(".")
        if parts[0] == "heads_k":
            parts[0] = "projectors_k"
        elif len(parts) > 2 and parts[2] in ("projector", "predictor"):
            parts = [parts[2] + "s", parts[1], *parts[3:]]
        state_dict[prefix + ".".join(parts)] = state_dict.pop(key)
