"""``solo-rgbd pretrain``: validate -> data -> method -> Lightning Trainer -> exported encoders.

Nothing is written before the config, the resume checkpoint and the data are validated. The
run folder then holds ``config.yaml``, ``logs/metrics.csv`` (appended across resumes),
``checkpoints/last.ckpt`` (every epoch, every ``checkpoint.every_n_steps``, on preemption
signals) and ``encoders/`` (every epoch, one verified unit).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import lightning.pytorch as pl
from lightning.fabric.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, OmegaConf

from solo_rgbd.config import check_missing
from solo_rgbd.config_checks import check_pretrain_config
from solo_rgbd.engine.checkpoint import RunCheckpoint, check_resume_fits
from solo_rgbd.engine.datamodule import RGBDDataModule
from solo_rgbd.engine.export import EncoderExport
from solo_rgbd.engine.guard import NonFiniteGuard
from solo_rgbd.engine.metrics import MetricsWriter
from solo_rgbd.engine.run import RUN_DIR_ENV, RunPlan, plan_run, resume_command
from solo_rgbd.engine.trainer import build_trainer, resolve_strategy, world_size
from solo_rgbd.errors import ConfigError
from solo_rgbd.methods.registry import METHODS
from solo_rgbd.tasks.sod.probes import probes_from_config
from solo_rgbd.utils.atomic import atomic_write_text, remove_leftovers
from solo_rgbd.utils.locks import hold_run_lock
from solo_rgbd.utils.safe_load import load_user_checkpoint


def _write_config(cfg: DictConfig, plan: RunPlan) -> None:
    """config.yaml of the run; on a resume with changed settings the old one is kept aside."""
    run = OmegaConf.to_container(cfg, resolve=True)
    run["resume"] = None  # how this process started is not a setting of the run
    text = OmegaConf.to_yaml(run)
    path = plan.run_dir / "config.yaml"
    if plan.ckpt is not None and path.is_file() and path.read_text() != text:
        n = len(list(plan.run_dir.glob("config.before-resume-*.yaml")))
        atomic_write_text(path.read_text(), plan.run_dir / f"config.before-resume-{n}.yaml")
    atomic_write_text(text, path)


def _loggers(cfg: DictConfig, run_dir: Path) -> list | bool:
    if not cfg.get("tensorboard"):
        return False
    try:
        from lightning.pytorch.loggers import TensorBoardLogger

        return [TensorBoardLogger(str(run_dir), name="tensorboard", version="")]
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"tensorboard=true needs the tensorboard package ({exc}); pip install "
            "tensorboard, or drop tensorboard=true (metrics always go to logs/metrics.csv)."
        ) from None


def run_pretrain(
    cfg: DictConfig,
    extra_callbacks: list[pl.Callback] | None = None,
    argv: Sequence[str] | None = None,
) -> Path:
    """Pretrain ``cfg.method`` and return the run folder (config, logs, checkpoints, encoders).

    ``argv`` (the command-line overrides) makes the printed resume command exact.
    """
    check_missing(cfg)
    check_pretrain_config(cfg)
    method_cls = METHODS[str(cfg.method)]
    plan = plan_run(cfg)
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    model = method_cls(cfg)  # validates method_kwargs
    if plan.ckpt is not None:  # a corrupt or foreign checkpoint fails here, before any write
        check_resume_fits(load_user_checkpoint(plan.ckpt, "resume checkpoint"), model, plan.ckpt)
    devices = world_size(cfg.trainer)
    batch = int(cfg.data.batch_size)  # global: split across devices, as in the paper
    if batch % devices:
        raise ConfigError(
            f"data.batch_size={batch} is the global batch and must split evenly over the "
            f"{devices} devices (trainer.devices x trainer.num_nodes); use a multiple of {devices}."
        )
    datamodule = RGBDDataModule(cfg.data, seed=int(cfg.seed), batch_size=batch // devices)
    datamodule.setup("fit")  # reads and validates the data
    n_train = len(datamodule.train_cache) if datamodule.train_cache is not None else 0
    if n_train < batch:
        raise ConfigError(
            f"data.batch_size={batch} is larger than the {n_train} training pairs; lower "
            "data.batch_size or add data."
        )

    return _fit(cfg, plan, model, datamodule, devices, extra_callbacks, argv)


def _fit(
    cfg: DictConfig,
    plan: RunPlan,
    model: pl.LightningModule,
    datamodule: RGBDDataModule,
    devices: int,
    extra_callbacks: list[pl.Callback] | None,
    argv: Sequence[str] | None,
) -> Path:
    """Build and check the Trainer, then write the run's config and train (rank 0 holds the
    run's lock). Nothing is written before every setting has been accepted."""
    run_dir = plan.run_dir
    last = run_dir / "checkpoints" / "last.ckpt"
    hint = resume_command(list(argv), last) if argv is not None else ""
    callbacks = [
        *probes_from_config(cfg),
        *(extra_callbacks or []),
        EncoderExport(
            run_dir / "encoders", int(cfg.checkpoint.get("snapshot_every_n_epochs") or 0)
        ),
        MetricsWriter(run_dir / "logs" / "metrics.csv"),
        NonFiniteGuard(**OmegaConf.to_container(cfg.nan_guard, resolve=True)),
        RunCheckpoint(
            run_dir / "checkpoints",
            int(cfg.checkpoint.every_n_steps),
            hint,
            every_n_minutes=float(cfg.checkpoint.get("every_n_minutes") or 0.0),
        ),
    ]
    for callback in callbacks:  # e.g. a probe that needs labels the data does not have
        if hasattr(callback, "check_data"):
            callback.check_data(datamodule)
    try:
        trainer = build_trainer(
            cfg.trainer,
            run_dir,
            model.planned_epochs(),
            callbacks,
            int(cfg.log_every_n_steps),
            loggers=_loggers(cfg, run_dir),
            strategy=resolve_strategy(cfg.trainer, model.has_unused_parameters),
            async_checkpoints=bool(cfg.checkpoint.get("async_save", True)),
            use_distributed_sampler=False,  # the EpochSampler shards by rank itself
        )
    except (ValueError, MisconfigurationException) as exc:
        raise ConfigError(
            f"Lightning refused the trainer settings: {str(exc).splitlines()[0]} Check "
            "trainer.strategy, trainer.accelerator and trainer.devices (solo-rgbd pretrain "
            "--cfg prints them)."
        ) from None
    lock = hold_run_lock(run_dir) if plan.rank_zero else None  # for the life of the run
    try:
        if plan.rank_zero:
            for target in ("config.yaml", "checkpoints/last.ckpt", "logs/metrics.csv"):
                remove_leftovers(run_dir / target)  # temporaries of a writer killed earlier
            _write_config(cfg, plan)
            if devices > 1:  # the DDP processes Lightning launches use this folder
                os.environ[RUN_DIR_ENV] = str(run_dir.resolve())
        trainer.fit(model, datamodule=datamodule, ckpt_path=plan.ckpt, weights_only=True)
    finally:
        if lock is not None:
            lock.release()
    return run_dir
