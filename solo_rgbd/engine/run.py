"""Run folders and what ``resume=`` points at.

A run lives in ``${output_dir}/${method}/<run_name>`` (``run_name`` defaults to the SLURM job id
under SLURM, else a timestamp). Only rank 0 names and creates it: it hands the folder to the
processes Lightning launches for DDP through ``SOLO_RGBD_RUN_DIR``.

``resume=`` takes

- ``last``: the run named by ``run_name``; without one, the only run of the method under
  ``output_dir`` that has a checkpoint (an error when there are several);
- ``auto``: like ``last`` when ``run_name``'s checkpoint exists, otherwise a fresh run of that
  name (for jobs that are requeued with the same command line);
- a checkpoint path inside a run folder (``<run>/checkpoints/*.ckpt`` next to
  ``<run>/config.yaml``).
"""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from zipfile import is_zipfile

from omegaconf import DictConfig

from solo_rgbd.errors import ConfigError
from solo_rgbd.utils.locks import RUN_LOCK_FILES

RUN_DIR_ENV = "SOLO_RGBD_RUN_DIR"


def env_rank() -> int:
    """The global rank this process will have, from the launcher's environment (0 if none)."""
    for key in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if os.environ.get(key, "").isdigit():
            return int(os.environ[key])
    return 0


@dataclass(frozen=True)
class RunPlan:
    run_dir: Path
    ckpt: Path | None  # the checkpoint to resume from, if any
    rank_zero: bool


def _method_dir(cfg: DictConfig, group: str | None = None) -> Path:
    """``output_dir/<group>``: the method's name for pretraining, e.g. ``train`` for a task."""
    return Path(str(cfg.output_dir)).expanduser() / str(group or cfg.method)


def default_run_name(cfg: DictConfig) -> str:
    if cfg.get("run_name"):
        return str(cfg.run_name)
    if os.environ.get("SLURM_JOB_ID"):
        array = os.environ.get("SLURM_ARRAY_TASK_ID")
        return f"slurm-{os.environ['SLURM_JOB_ID']}" + (f"-{array}" if array else "")
    return time.strftime("%Y%m%d-%H%M%S")


def _last_of(cfg: DictConfig, allow_fresh: bool, group: str | None) -> RunPlan:
    name = cfg.get("run_name") or (
        default_run_name(cfg) if os.environ.get("SLURM_JOB_ID") else None
    )
    if name:
        run_dir = _method_dir(cfg, group) / str(name)
        ckpt = run_dir / "checkpoints" / "last.ckpt"
        if ckpt.is_file():
            return RunPlan(run_dir, ckpt, env_rank() == 0)
        _refuse_to_discard(ckpt)
        if allow_fresh:
            return RunPlan(run_dir, None, env_rank() == 0)
        raise ConfigError(
            f"resume=last: run '{run_dir}' has no checkpoints/last.ckpt; check run_name and "
            "output_dir, or use resume=auto to start the run when it has no checkpoint yet."
        )
    if allow_fresh:
        raise ConfigError(
            "resume=auto needs run_name=NAME (the run to continue or to start); under SLURM it "
            "defaults to slurm-<job id>."
        )
    where = _method_dir(cfg, group)
    found = sorted(where.glob("*/checkpoints/last.ckpt"))
    if not found:
        raise ConfigError(
            f"resume=last found no run with checkpoints/last.ckpt under '{where}'; "
            "pass run_name=NAME or resume=/path/to/run/checkpoints/last.ckpt."
        )
    if len(found) > 1:
        names = ", ".join(p.parent.parent.name for p in found[:10])
        raise ConfigError(
            f"resume=last is ambiguous: {len(found)} runs under '{where}' have a "
            f"checkpoint ({names}). Say which with run_name=NAME."
        )
    return RunPlan(found[0].parent.parent, found[0], env_rank() == 0)


def _refuse_to_discard(ckpt: Path) -> None:
    """A run without ``last.ckpt`` whose temporaries hold a complete checkpoint (a save cut
    short after its last byte, before the rename) is not started over: the start would delete
    them. The error names the file and how to keep it."""
    complete = [p for p in sorted(ckpt.parent.glob(f".{ckpt.name}.*.tmp")) if is_zipfile(p)]
    if complete:
        raise ConfigError(
            f"'{ckpt}' is missing, but '{complete[-1]}' holds a complete checkpoint that a save "
            "cut short left beside it; starting the run over would delete it, so nothing was "
            f"done. Keep it with: mv '{complete[-1]}' '{ckpt}' (then resume again), or delete "
            "it to start over."
        )


def plan_run(cfg: DictConfig, group: str | None = None) -> RunPlan:
    """Where this run writes (``output_dir/<group or method>/<run_name>``) and what it resumes
    from; creates nothing."""
    inherited = os.environ.get(RUN_DIR_ENV)
    if inherited and env_rank() != 0:  # a DDP process launched by rank 0
        run_dir = Path(inherited)
        ckpt = run_dir / "checkpoints" / "last.ckpt" if cfg.get("resume") else None
        if cfg.get("resume") and str(cfg.resume) not in ("last", "auto"):
            ckpt = Path(str(cfg.resume)).expanduser()
        return RunPlan(run_dir, ckpt if ckpt is not None and ckpt.is_file() else None, False)
    resume = cfg.get("resume")
    if resume in ("last", "auto"):
        return _last_of(cfg, resume == "auto", group)
    if resume:
        path = Path(str(resume)).expanduser().resolve()
        if not path.is_file():
            raise ConfigError(f"resume checkpoint '{path}' does not exist; fix the resume= path.")
        run_dir = path.parent.parent
        if path.parent.name != "checkpoints" or not (run_dir / "config.yaml").is_file():
            raise ConfigError(
                f"resume checkpoint '{path}' is not inside a run folder "
                "(<run>/checkpoints/*.ckpt next to <run>/config.yaml), so there is no run to "
                "continue. Copy the whole run folder and resume from its checkpoints/last.ckpt, "
                "or start a new run."
            )
        _check_resumable(run_dir, cfg.get("run_name"))
        return RunPlan(run_dir, path, env_rank() == 0)
    run_dir = _method_dir(cfg, group) / default_run_name(cfg)
    if run_dir.is_dir() and any(p.name not in RUN_LOCK_FILES for p in run_dir.iterdir()):
        what = "checkpoints" if (run_dir / "checkpoints").is_dir() else "another run's files"
        raise ConfigError(
            f"run folder '{run_dir}' already holds {what}, and a fresh run never overwrites "
            f"them; choose another run_name, or continue that run with resume=last "
            f"run_name={run_dir.name} (resume=auto also restarts a run that has no checkpoint "
            "yet)."
        )
    return RunPlan(run_dir, None, env_rank() == 0)


def _check_resumable(run_dir: Path, run_name: object) -> None:
    """``resume=PATH`` writes into PATH's run folder: only one that solo-rgbd made (its
    ``.run.lock`` or ``run.json``), and a ``run_name`` naming another run is an error."""
    if not any((run_dir / f).is_file() for f in (RUN_LOCK_FILES[0], "run.json")):
        raise ConfigError(
            f"'{run_dir}' has a config.yaml and a checkpoint but not the files solo-rgbd leaves "
            f"in its run folders ({RUN_LOCK_FILES[0]}, run.json), so a resume does not write into "
            "it. Copy the whole run folder, hidden files included (cp -a), and resume from that."
        )
    if run_name and str(run_name) != run_dir.name:
        raise ConfigError(
            f"resume= continues the run '{run_dir.name}' in '{run_dir}', but run_name={run_name} "
            f"names another run; drop run_name, or continue that one with resume=last "
            f"run_name={run_name}."
        )


def resume_command(argv: list[str], ckpt: Path, command: Sequence[str] = ("pretrain",)) -> str:
    """The command line that resumes this run: the same overrides, ``resume=<ckpt>``."""
    kept = [a for a in argv if not a.startswith(("resume=", "+resume="))]
    words = ["solo-rgbd", *command, *kept, f"resume={ckpt}"]
    return " ".join(shlex.quote(a) for a in words)
