"""``solo-rgbd pretrain``: validate -> data -> method -> Lightning Trainer -> exported encoders.

Nothing is written before the config, the resume checkpoint and the data are validated. The
run folder then holds ``config.yaml``, ``logs/metrics.csv`` (appended across resumes),
``checkpoints/last.ckpt`` (every epoch, every ``checkpoint.every_n_steps``, on preemption
signals) and ``encoders/`` (every epoch, one verified unit).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import lightning.pytorch as pl
from omegaconf import DictConfig

from solo_rgbd.config import check_missing
from solo_rgbd.config_checks import check_pretrain_config
from solo_rgbd.engine.datamodule import RGBDDataModule
from solo_rgbd.engine.export import EncoderExport
from solo_rgbd.engine.fit import RunSpec, check_resume, fit_run
from solo_rgbd.engine.run import RunPlan, plan_run, resume_command
from solo_rgbd.errors import ConfigError
from solo_rgbd.methods.registry import METHODS
from solo_rgbd.utils.console import say


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
    say(f"{cfg.method}: run folder {plan.run_dir}; preparing data '{cfg.data.name}'")
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    model = method_cls(cfg)  # validates method_kwargs
    check_resume(plan, model)
    batch = int(cfg.data.batch_size)  # global: split across devices, as in the paper
    datamodule = RGBDDataModule(cfg.data, seed=int(cfg.seed))
    datamodule.setup("fit")  # reads and validates the data
    n_train = len(datamodule.train_cache) if datamodule.train_cache is not None else 0
    if n_train < batch:
        raise ConfigError(
            f"data.batch_size={batch} is larger than the {n_train} training pairs; lower "
            "data.batch_size or add data."
        )

    return _fit(cfg, plan, model, datamodule, extra_callbacks, argv)


def _summary(run_dir: Path, cfg: DictConfig) -> dict[str, str]:
    """What the trackers get at the end: each export's sha256 and the report's path."""
    import json

    out = {"run_dir": str(run_dir.resolve())}
    manifest = run_dir / "encoders" / "encoders.json"
    if manifest.is_file():
        for name, entry in json.loads(manifest.read_text()).get("encoders", {}).items():
            out[f"export_sha256_{name}"] = str(entry.get("sha256", ""))
    if cfg.get("report", True):
        out["report"] = str((run_dir / "report.html").resolve())
    return out


def _task_probes(cfg: DictConfig) -> list[pl.Callback]:
    """The online probes of every registered task (each reads its own settings in ``probes``;
    none is on by default)."""
    from solo_rgbd.tasks.registry import registered_tasks, task_spec

    probes: list[pl.Callback] = []
    for name in registered_tasks():
        spec = task_spec(name)
        if spec.online_probes is not None:
            probes += spec.online_probes(cfg)
    return probes


def _check_batch_split(batch: int, devices: int) -> None:
    if batch % devices:
        raise ConfigError(
            f"data.batch_size={batch} is the global batch and must split evenly over the "
            f"{devices} processes Lightning starts (trainer.devices x trainer.num_nodes); use a "
            f"multiple of {devices}."
        )


def _fit(
    cfg: DictConfig,
    plan: RunPlan,
    model: pl.LightningModule,
    datamodule: RGBDDataModule,
    extra_callbacks: list[pl.Callback] | None,
    argv: Sequence[str] | None,
) -> Path:
    """The method's callbacks (probes, encoder export) on the engine's run."""
    run_dir = plan.run_dir
    last = run_dir / "checkpoints" / "last.ckpt"
    callbacks = [
        *_task_probes(cfg),
        *(extra_callbacks or []),
        EncoderExport(
            run_dir / "encoders", int(cfg.checkpoint.get("snapshot_every_n_epochs") or 0)
        ),
    ]
    for callback in callbacks:  # e.g. a probe that needs labels the data does not have
        if hasattr(callback, "check_data"):
            callback.check_data(datamodule)
    spec = RunSpec(
        cfg=cfg,
        plan=plan,
        max_epochs=model.planned_epochs(),
        resume_hint=resume_command(list(argv), last) if argv is not None else "",
        log_every_n_steps=int(cfg.log_every_n_steps),
        callbacks=callbacks,
        summary=lambda: _summary(run_dir, cfg),
        unused_parameters=model.has_unused_parameters,
        check=lambda trainer: _check_batch_split(int(cfg.data.batch_size), trainer.world_size),
    )
    fit_run(spec, model, datamodule=datamodule)
    return run_dir
