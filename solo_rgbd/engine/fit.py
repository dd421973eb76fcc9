"""One way to train anything: a pretraining method, a task's decoder, a fine-tune, the
Supervised bound.

:func:`fit_run` gives every run the same folder and the same guarantees: ``config.yaml``,
``logs/metrics.csv`` (:class:`~solo_rgbd.engine.csv_logger.RunCSVLogger`, appended across
resumes), ``checkpoints/last.ckpt`` (:class:`~solo_rgbd.engine.checkpoint.RunCheckpoint`: on
the ``checkpoint.*`` policy, at the end and on preemption signals, with the RNG states), exact
resume, and the non-finite guard. Commands decide what to train; the engine does not know
methods or tasks.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import lightning.pytorch as pl
from lightning.fabric.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, OmegaConf

from solo_rgbd.engine.checkpoint import RunCheckpoint, check_resume_fits
from solo_rgbd.engine.contract import RunModule, require
from solo_rgbd.engine.csv_logger import RunCSVLogger
from solo_rgbd.engine.guard import NonFiniteGuard
from solo_rgbd.engine.metrics import MetricsWriter
from solo_rgbd.engine.quiet import set_verbosity
from solo_rgbd.engine.run import RUN_DIR_ENV, RunPlan
from solo_rgbd.engine.run_info import RunInfo, status_of
from solo_rgbd.engine.trackers import TrackerRuns, build_trackers, finish_trackers
from solo_rgbd.engine.trainer import (
    build_trainer,
    checkpoint_writer,
    planned_world_size,
    resolve_strategy,
)
from solo_rgbd.errors import ConfigError
from solo_rgbd.utils.atomic import atomic_write_text, remove_leftovers
from solo_rgbd.utils.locks import hold_run_lock
from solo_rgbd.utils.safe_load import load_user_checkpoint


@dataclass
class RunSpec:
    """What :func:`fit_run` needs besides the module and its data."""

    cfg: DictConfig  # the run's settings (written to config.yaml); trainer, checkpoint, nan_guard
    plan: RunPlan
    max_epochs: int
    resume_hint: str = ""  # the command line that resumes this run
    log_every_n_steps: int = 10
    callbacks: list[pl.Callback] = field(default_factory=list)  # the task's or method's own
    extra_loggers: list[Any] = field(default_factory=list)  # e.g. TensorBoard
    #: more Trainer arguments (the engine sets use_distributed_sampler=False itself: its data
    #: modules shard by rank, see :mod:`solo_rgbd.engine.datamodule`)
    trainer_kwargs: dict[str, Any] = field(default_factory=dict)
    #: some parameters get no gradient in some steps (DDP then needs find_unused_parameters)
    unused_parameters: bool = False
    #: checks that need the Trainer (e.g. the batch over ``trainer.world_size``), run before
    #: anything is written; raise ConfigError
    check: Callable[[pl.Trainer], None] | None = None
    #: what the trackers (``loggers=[...]``) get when the run finished, e.g. the export's hash
    summary: Callable[[], dict[str, str]] | None = None


def write_config(cfg: DictConfig, plan: RunPlan) -> None:
    """config.yaml of the run; on a resume with changed settings the old one is kept aside."""
    run = OmegaConf.to_container(cfg, resolve=True)
    run["resume"] = None  # how this process started is not a setting of the run
    text = OmegaConf.to_yaml(run)
    path = plan.run_dir / "config.yaml"
    if plan.ckpt is not None and path.is_file() and path.read_text() != text:
        n = len(list(plan.run_dir.glob("config.before-resume-*.yaml")))
        atomic_write_text(path.read_text(), plan.run_dir / f"config.before-resume-{n}.yaml")
    atomic_write_text(text, path)


def check_resume(plan: RunPlan, module: pl.LightningModule) -> None:
    """A corrupt or foreign resume checkpoint fails here, before anything is written."""
    if plan.ckpt is not None:
        check_resume_fits(load_user_checkpoint(plan.ckpt, "resume checkpoint"), module, plan.ckpt)


def engine_callbacks(spec: RunSpec) -> list[pl.Callback]:
    cfg = spec.cfg
    return [
        MetricsWriter(),
        NonFiniteGuard(**OmegaConf.to_container(cfg.nan_guard, resolve=True)),
        RunCheckpoint(
            spec.plan.run_dir / "checkpoints",
            int(cfg.checkpoint.every_n_steps),
            spec.resume_hint,
            every_n_minutes=float(cfg.checkpoint.every_n_minutes),
            every_n_epochs=int(cfg.checkpoint.get("every_n_epochs") or 0),
        ),
    ]


def build_run_trainer(
    spec: RunSpec, callbacks: list[pl.Callback], trackers: Sequence[Any] = ()
) -> pl.Trainer:
    """The Trainer of the run, built once: the strategy (DDP that tolerates parameters without
    gradients, for a method that has them) follows from the process count Lightning's device
    parsers give (:func:`~solo_rgbd.engine.trainer.planned_world_size`). Should the built
    Trainer count otherwise (a launcher's environment), the strategy follows its count."""
    t, unused = spec.cfg.trainer, spec.unused_parameters
    planned = planned_world_size(t)
    strategy = resolve_strategy(t, unused, planned)
    trainer = _trainer(spec, callbacks, strategy, trackers)
    if trainer.world_size != planned:
        actual = resolve_strategy(t, unused, trainer.world_size)
        if actual != strategy:  # another name, or a DDP object where a name was planned
            trainer = _trainer(spec, callbacks, actual, trackers)
    return trainer


def _trainer(
    spec: RunSpec, callbacks: list[pl.Callback], strategy: Any, trackers: Sequence[Any] = ()
) -> pl.Trainer:
    run_dir = spec.plan.run_dir
    try:
        return build_trainer(
            spec.cfg.trainer,
            run_dir,
            spec.max_epochs,
            callbacks,
            spec.log_every_n_steps,
            loggers=[
                RunCSVLogger(run_dir / "logs" / "metrics.csv"),
                *trackers,
                *spec.extra_loggers,
            ],
            strategy=strategy,
            checkpoint_io=checkpoint_writer(spec.cfg.checkpoint.get("async_save", "auto")),
            **{"use_distributed_sampler": False, **spec.trainer_kwargs},
        )
    except (ValueError, MisconfigurationException) as exc:
        raise ConfigError(
            f"Lightning refused the trainer settings: {str(exc).splitlines()[0]} Check "
            "trainer.strategy, trainer.accelerator and trainer.devices (--cfg prints them)."
        ) from None


def fit_run(
    spec: RunSpec,
    module: pl.LightningModule,
    *,
    datamodule: pl.LightningDataModule,
) -> pl.Trainer:
    """Check the module against the engine's contract, build and check the Trainer, then write
    the run's config and train (rank 0 holds the run's lock). Nothing is written before every
    setting has been accepted."""
    require(module, RunModule)  # a missing member is named here, not deep inside Lightning
    set_verbosity(bool(spec.cfg.get("verbose", False)))  # no Lightning tips unless verbose
    plan = spec.plan
    trackers = build_trackers(spec.cfg, plan.run_dir, plan.ckpt)  # a missing package: error
    callbacks = [*spec.callbacks, *engine_callbacks(spec), TrackerRuns(plan.run_dir)]
    trainer = build_run_trainer(spec, callbacks, trackers)
    if spec.check is not None:
        spec.check(trainer)
    lock = hold_run_lock(plan.run_dir) if plan.rank_zero else None  # for the life of the run
    info = RunInfo(plan.run_dir) if plan.rank_zero else None
    try:
        if info is not None:
            for target in _LEFTOVERS:
                remove_leftovers(plan.run_dir / target)  # temporaries of a writer killed earlier
            write_config(spec.cfg, plan)
            info.start(trainer, plan.ckpt)  # run.json: command, versions, device, times
            if trainer.world_size > 1:  # the DDP processes Lightning launches use this folder
                os.environ[RUN_DIR_ENV] = str(plan.run_dir.resolve())
        try:
            trainer.fit(module, datamodule=datamodule, ckpt_path=plan.ckpt, weights_only=True)
        except BaseException as exc:
            if info is not None:
                info.end(status_of(exc))
            with contextlib.suppress(Exception):  # the run's own error is the one to see
                finish_trackers(trainer, {}, failed=True)
            raise
        if info is not None:
            info.end(status_of(None))
        finish_trackers(trainer, spec.summary() if spec.summary is not None else {})
    finally:
        if lock is not None:
            lock.release()
    return trainer


_LEFTOVERS: Sequence[str] = (
    "config.yaml",
    "run.json",
    "checkpoints/last.ckpt",
    "checkpoints/best.ckpt",
    "logs/metrics.csv",
)
