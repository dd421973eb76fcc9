"""The Lightning Trainer every command builds, from the ``trainer`` config group."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.plugins import CheckpointIO
from omegaconf import DictConfig, OmegaConf

from solo_rgbd.engine.async_io import AsyncAtomicCheckpointIO
from solo_rgbd.engine.checkpoint import AtomicCheckpointIO
from solo_rgbd.engine.progress import RunProgressBar
from solo_rgbd.errors import ConfigError

PRECISIONS = ("auto", "32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "64-true", "64")


def resolve_precision(trainer_cfg: DictConfig) -> str:
    setting = str(trainer_cfg.precision)
    if setting != "auto":
        return setting
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


def checkpoint_writer(setting: Any) -> CheckpointIO:
    """What writes checkpoints and exports, for ``checkpoint.async_save``: ``true`` (``auto``) a
    background thread, the step loop paying for a host copy of the state; ``false`` the loop
    itself. The thread measured better on CPU too, with a checkpoint every epoch of the main
    job (1.31x against 1.36x a bare loop, ``bench/overhead.py``, docs/benchmarks.md)."""
    return AtomicCheckpointIO() if setting is False else AsyncAtomicCheckpointIO()


def resolve_strategy(trainer_cfg: DictConfig, unused_parameters: bool, world_size: int) -> Any:
    """``ddp`` (or ``auto`` on several devices) for a method whose stages leave parameters
    without gradients becomes DDP with ``find_unused_parameters=True``. ``world_size`` is what
    Lightning resolved from ``trainer.devices`` and ``trainer.num_nodes``."""
    name = str(trainer_cfg.strategy)
    if unused_parameters and (name == "ddp" or (name == "auto" and world_size > 1)):
        from lightning.pytorch.strategies import DDPStrategy

        return DDPStrategy(find_unused_parameters=True)
    return name


def planned_world_size(trainer_cfg: DictConfig) -> int:
    """The processes Lightning will start for ``trainer.accelerator``, ``devices`` and
    ``num_nodes``, counted with Lightning's own device parsers (so the run's Trainer is built
    once, with the strategy this count decides)."""
    from lightning.pytorch.accelerators import CPUAccelerator, CUDAAccelerator

    t = trainer_cfg
    accelerator = str(t.accelerator)
    cuda = accelerator in ("gpu", "cuda") or (
        accelerator == "auto" and CUDAAccelerator.is_available()
    )
    kind = CUDAAccelerator if cuda else CPUAccelerator
    devices = t.devices
    devices = list(devices) if OmegaConf.is_list(devices) else devices
    if devices == "auto":
        devices = kind.auto_device_count()
    parsed = kind.parse_devices(devices)
    count = parsed if isinstance(parsed, int) else len(parsed or [])
    return max(1, count) * int(t.get("num_nodes", 1) or 1)


def build_trainer(
    trainer_cfg: DictConfig,
    run_dir: Path,
    max_epochs: int,
    callbacks: list[pl.Callback],
    log_every_n_steps: int = 10,
    loggers: list | bool | None = None,
    strategy: Any = None,
    checkpoint_io: CheckpointIO | None = None,
    **kwargs: Any,
) -> pl.Trainer:
    """A Lightning Trainer logging to ``loggers`` (default: Lightning's CSV in run_dir/logs);
    checkpoints are atomic, written by ``checkpoint_io`` (default: synchronously)."""
    t = trainer_cfg
    if loggers is None:
        from lightning.pytorch.loggers import CSVLogger

        loggers = [CSVLogger(str(run_dir), name="logs", version="")]
    if t.get("num_threads"):
        torch.set_num_threads(int(t.num_threads))
    if bool(t.enable_progress_bar):  # the method's values without a host read per step
        callbacks = [*callbacks, RunProgressBar()]
    try:
        return pl.Trainer(
            max_epochs=max_epochs,
            accelerator=str(t.accelerator),
            devices=t.devices,
            num_nodes=int(t.get("num_nodes", 1) or 1),
            strategy=strategy if strategy is not None else str(t.strategy),
            precision=resolve_precision(t),
            limit_train_batches=t.limit_train_batches,
            accumulate_grad_batches=int(t.get("accumulate_grad_batches", 1) or 1),
            enable_progress_bar=bool(t.enable_progress_bar),
            deterministic=bool(t.deterministic),
            log_every_n_steps=log_every_n_steps,
            logger=loggers,
            callbacks=callbacks,
            plugins=[checkpoint_io or AtomicCheckpointIO()],
            default_root_dir=str(run_dir),
            enable_model_summary=False,
            num_sanity_val_steps=0,
            **kwargs,
        )
    except (ValueError, RuntimeError, TypeError) as exc:  # Lightning's own argument checks
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"the trainer settings are not accepted ({first}). Check trainer.accelerator, "
            "trainer.devices, trainer.strategy and trainer.precision "
            f"(precision: one of {', '.join(PRECISIONS)})."
        ) from None
