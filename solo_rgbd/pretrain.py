"""``solo-rgbd pretrain``: compose -> data -> method -> Lightning Trainer -> exported encoders."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from omegaconf import DictConfig, OmegaConf

from solo_rgbd.callbacks.export import AtomicCheckpointIO, EncoderExport, export_encoders
from solo_rgbd.callbacks.probes import probes_from_config
from solo_rgbd.config import check_missing
from solo_rgbd.data.datamodule import RGBDDataModule
from solo_rgbd.errors import ConfigError
from solo_rgbd.methods.registry import METHODS
from solo_rgbd.utils.atomic import atomic_write_text

log = logging.getLogger(__name__)


def run_dir_for(cfg: DictConfig) -> Path:
    """``${output_dir}/${method}/<run_name or timestamp>``; a resumed run reuses its folder."""
    if cfg.get("resume"):
        return resume_path(cfg).parent.parent
    name = cfg.get("run_name") or time.strftime("%Y%m%d-%H%M%S")
    path = Path(cfg.output_dir) / str(cfg.method) / str(name)
    if (path / "checkpoints").exists():
        raise ConfigError(
            f"run folder '{path}' already holds checkpoints; choose another run_name or resume "
            f"with resume={path / 'checkpoints' / 'last.ckpt'}."
        )
    return path


def resume_path(cfg: DictConfig) -> Path:
    resume = str(cfg.resume)
    if resume == "last":
        found = sorted(
            Path(cfg.output_dir).glob(f"{cfg.method}/*/checkpoints/last.ckpt"),
            key=lambda p: p.stat().st_mtime,
        )
        if not found:
            raise ConfigError(
                f"resume=last found no checkpoints/last.ckpt under "
                f"'{Path(cfg.output_dir) / str(cfg.method)}'; pass a checkpoint path instead."
            )
        return found[-1]
    path = Path(resume).expanduser()
    if not path.is_file():
        raise ConfigError(f"resume checkpoint '{path}' does not exist; fix the resume= path.")
    return path


def _precision(trainer_cfg: DictConfig) -> str:
    setting = str(trainer_cfg.precision)
    if setting != "auto":
        return setting
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


def build_trainer(
    trainer_cfg: DictConfig,
    run_dir: Path,
    max_epochs: int,
    callbacks: list[pl.Callback],
    log_every_n_steps: int = 10,
    tensorboard: bool = False,
    **kwargs,
) -> pl.Trainer:
    """A Lightning Trainer from the ``trainer`` config group, logging to run_dir/logs."""
    t = trainer_cfg
    loggers: list = [CSVLogger(str(run_dir), name="logs", version="")]
    if tensorboard:
        try:
            from lightning.pytorch.loggers import TensorBoardLogger

            loggers.append(TensorBoardLogger(str(run_dir), name="tensorboard", version=""))
        except ModuleNotFoundError as exc:
            raise ConfigError(
                f"tensorboard=true needs the tensorboard package ({exc}); pip install "
                "tensorboard, or drop tensorboard=true (metrics always go to logs/metrics.csv)."
            ) from None
    if t.get("num_threads"):
        torch.set_num_threads(int(t.num_threads))
    return pl.Trainer(
        max_epochs=max_epochs,
        accelerator=str(t.accelerator),
        devices=t.devices,
        strategy=str(t.strategy),
        precision=_precision(t),
        limit_train_batches=t.limit_train_batches,
        enable_progress_bar=bool(t.enable_progress_bar),
        deterministic=bool(t.deterministic),
        log_every_n_steps=log_every_n_steps,
        logger=loggers,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        default_root_dir=str(run_dir),
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **kwargs,
    )


def run_pretrain(cfg: DictConfig, extra_callbacks: list[pl.Callback] | None = None) -> Path:
    """Pretrain ``cfg.method`` and return the run folder (config, logs, checkpoints, encoders)."""
    check_missing(cfg)
    method_cls = METHODS[str(cfg.method)]
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    model = method_cls(cfg)  # validates method_kwargs before anything is written
    run_dir = run_dir_for(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(OmegaConf.to_yaml(cfg, resolve=True), run_dir / "config.yaml")
    datamodule = RGBDDataModule(cfg.data, seed=int(cfg.seed))
    callbacks = [
        ModelCheckpoint(
            dirpath=str(run_dir / "checkpoints"), save_last=True, save_top_k=0, every_n_epochs=1
        ),
        EncoderExport(run_dir / "encoders"),
        *probes_from_config(cfg),
        *(extra_callbacks or []),
    ]
    trainer = build_trainer(
        cfg.trainer, run_dir, model.planned_epochs(), callbacks, int(cfg.log_every_n_steps)
    )
    ckpt = str(resume_path(cfg)) if cfg.get("resume") else None
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt)
    if trainer.is_global_zero:
        export_encoders(
            model,
            run_dir / "encoders",
            {"epoch": trainer.current_epoch, "global_step": trainer.global_step},
        )
    return run_dir
