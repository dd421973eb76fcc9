"""Checkpoints that hold everything deciding a run's future, written atomically, on a policy
that suits a 20-second demo and a 3-day run.

:class:`RunCheckpoint` writes ``checkpoints/last.ckpt``:

- at an epoch's end when ``every_n_minutes`` (default 10) of wall time have passed since the
  last checkpoint, or the epoch is a multiple of ``every_n_epochs`` (if > 0);
- every ``every_n_steps`` optimizer steps (if > 0);
- always at the end of the run, and when a preemption signal arrived (SIGTERM, SIGINT,
  SIGUSR1: then it waits for the write and raises :class:`~solo_rgbd.errors.Preempted`).

The epoch-end decision is taken once per epoch (:meth:`RunCheckpoint.due_at_epoch_end`), so the
encoder export (:mod:`solo_rgbd.engine.export`) follows the same rhythm. Each save is a new
file: ``torch.save`` into a temporary beside ``last.ckpt``, fsynced, renamed over it, the folder
fsynced (:class:`AtomicCheckpointIO`); with ``checkpoint.async_save`` a background thread does
the writing (:mod:`solo_rgbd.engine.async_io`). Besides what Lightning saves (weights,
momentum encoders, queues as buffers, optimizer, loop progress, the data position of
:class:`~solo_rgbd.data.sampler.ResumableLoader`), the checkpoint holds the RNG states of torch
(CPU and CUDA), numpy and python, restored at ``on_train_start`` of the resumed run, so
augmentation draws continue exactly where they stopped.

Checkpoints are saved at ``on_train_batch_end``, after the method's optimizer step and
momentum update (``BaseMethod.optimizer_step``), and after the metrics of the step are on disk.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Checkpoint

from solo_rgbd.engine.contract import HasOptionalState, RunModule
from solo_rgbd.engine.guard import non_finite_message
from solo_rgbd.engine.signals import SignalWatch
from solo_rgbd.errors import CheckpointError, NonFiniteError, Preempted
from solo_rgbd.utils.atomic import atomic_torch_save
from solo_rgbd.utils.console import say
from solo_rgbd.utils.finite import all_finite

#: the default of ``checkpoint.every_n_minutes`` (docs/pretraining.md says why)
EVERY_N_MINUTES = 10.0


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoints written the ordinary way: a new temporary file, fsynced, renamed
    into place, the folder fsynced. A reader never sees a half-written file, and one that holds
    the previous checkpoint open keeps its bytes."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        atomic_torch_save(checkpoint, path)


# ----- RNG ----------------------------------------------------------------------------------
def capture_rng() -> dict[str, Any]:
    """Every RNG that augmentation or initialisation may draw from, as weights_only-safe data."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["kind"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["gauss"],
        )
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def params_finite(module: torch.nn.Module) -> bool:
    """True when every parameter and floating buffer is finite (one fused check, one sync)."""
    return all_finite([*module.parameters(), *module.buffers()])


class RunCheckpoint(Checkpoint):
    """``last.ckpt`` on the run's policy (module doc): epoch ends by time or epoch count, every
    ``every_n_steps`` steps, at the end of the run and on preemption signals."""

    def __init__(
        self,
        dirpath: str | os.PathLike[str],
        every_n_steps: int = 0,
        resume_hint: str = "",
        every_n_minutes: float = EVERY_N_MINUTES,
        every_n_epochs: int = 0,
        clock=time.monotonic,
    ) -> None:
        self.dirpath = Path(dirpath)
        self.every_n_steps = int(every_n_steps or 0)
        self.every_n_epochs = int(every_n_epochs or 0)
        self.every_s = float(every_n_minutes or 0.0) * 60.0
        self.resume_hint = resume_hint
        self.signals = SignalWatch()
        self.saved_step: int | None = None
        self.saves = 0  # in this session
        self._rng_to_restore: dict[str, Any] | None = None
        self._stop_at: tuple[int, int, int] | None = None  # (signal, step, epoch) to exit after
        self._stop_saved = False  # the checkpoint of that step is written
        self._clock = clock
        self._last_save_time = clock()
        self._decided: tuple[int, bool] = (-1, False)  # (epoch, due at its end)

    @property
    def state_key(self) -> str:
        return "RunCheckpoint"

    @property
    def path(self) -> Path:
        return self.dirpath / "last.ckpt"

    # ----- state in the checkpoint ----------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        rng = capture_rng()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            per_rank: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(per_rank, rng)
            return {"rng_per_rank": per_rank}
        return {"rng_per_rank": [rng]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        per_rank = state_dict.get("rng_per_rank") or []
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        self._rng_to_restore = per_rank[rank] if rank < len(per_rank) else None

    # ----- the policy -----------------------------------------------------------------------
    def due_at_epoch_end(self, trainer: pl.Trainer) -> bool:
        """Whether the end of the current epoch writes a checkpoint: the run's last epoch, a
        pending signal, a multiple of ``every_n_epochs``, or ``every_n_minutes`` since the
        last checkpoint (rank 0's clock decides for all ranks). Decided once per epoch, so the
        export, which asks first, and the checkpoint agree."""
        epoch = trainer.current_epoch
        if self._decided[0] != epoch:
            done = epoch + 1
            last = trainer.max_epochs is not None and 0 < trainer.max_epochs <= done
            due = self.every_s > 0 and self._clock() - self._last_save_time >= self.every_s
            if trainer.world_size > 1 and self.every_s > 0:
                due = bool(trainer.strategy.broadcast(due, src=0))
            by_epoch = self.every_n_epochs > 0 and done % self.every_n_epochs == 0
            signalled = self._stop_at is not None
            self._decided = (epoch, bool(last or signalled or by_epoch or due))
        return self._decided[1]

    # ----- hooks ------------------------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._rng_to_restore is not None:
            restore_rng(self._rng_to_restore)
            self._rng_to_restore = None
        self.signals.install()
        self._last_save_time = self._clock()
        if trainer.ckpt_path and trainer.is_global_zero:
            say(
                f"resumed at epoch {trainer.current_epoch}, step {trainer.global_step} from "
                f"{trainer.ckpt_path}"
            )

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._exit_if_stopped(trainer)
        if self.saved_step != trainer.global_step:  # a run that ended before its last epoch
            self.save(trainer, pl_module)
        wait_for_checkpoint(trainer)
        if trainer.is_global_zero and self.saves:
            from solo_rgbd.engine.ckpt_info import summary_line

            say(f"checkpoint: {summary_line(_sizes_of(trainer, pl_module))}; {self.describe()}")

    def describe(self) -> str:
        """The policy in words, with this session's count of saves."""
        when = [f"every {self.every_s / 60:g} min at an epoch's end"] if self.every_s else []
        when += [f"every {self.every_n_epochs} epochs"] if self.every_n_epochs else []
        when += [f"every {self.every_n_steps} steps"] if self.every_n_steps else []
        n = f"{self.saves} save{'s' if self.saves != 1 else ''}"
        return f"{n} ({', '.join([*when, 'at the end, on SIGTERM/SIGINT/SIGUSR1'])})"

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.signals.restore()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self.signals.restore()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        stop = self.signals.signum is not None
        if trainer.world_size > 1:  # every rank stops at the same step
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        step = trainer.global_step
        periodic = self.every_n_steps > 0 and step > 0 and step % self.every_n_steps == 0
        # the epoch's last step is saved at the epoch's end (after its validation), so that
        # a checkpoint inside an epoch never holds rows the epoch's end logs after it
        last = batch_idx + 1 >= getattr(trainer, "num_training_batches", float("inf"))
        if (stop or periodic) and not last:
            self.save(trainer, pl_module)
        if stop:  # exit once Lightning has logged this step's self.log values (after this hook)
            self._stop_at = (self.signals.signum or 15, step, trainer.current_epoch)
            self._stop_saved = not last  # the last step's checkpoint comes at the epoch's end

    def _exit_if_stopped(self, trainer: pl.Trainer) -> None:
        """Raise :class:`Preempted` at the first hook after the step (or the epoch's end) that
        saw the signal: its checkpoint is on disk, and so are the rows Lightning logged after
        the checkpoint (a step's ``self.log`` values, an epoch's means)."""
        if self._stop_at is None or not self._stop_saved:
            return
        signum, step, epoch = self._stop_at
        self._stop_at = None
        wait_for_checkpoint(trainer)  # the file named below is on disk before the exit
        for logger in trainer.loggers:
            logger.save()
        hint = self.resume_hint or f"solo-rgbd <same command and overrides> resume={self.path}"
        raise Preempted(
            f"stopped by signal {signum} after step {step} (epoch {epoch}); the checkpoint is "
            f"'{self.path}'. Resume exactly where it stopped with: {hint}",
            signum,
        )

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._exit_if_stopped(trainer)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._exit_if_stopped(trainer)  # after the rows of the last epoch's end

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.due_at_epoch_end(trainer):
            self.save(trainer, pl_module)
        self._stop_saved = True  # a signal of the epoch's last step exits at the next hook

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        # what wrote the checkpoint, so that a resume by something else fails clearly
        checkpoint["run_kind"] = run_kind(pl_module)

    def save(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not params_finite(pl_module):
            raise NonFiniteError(
                non_finite_message(trainer, pl_module, "the update made the weights non-finite")
            )
        for logger in trainer.loggers:  # metrics up to this step are on disk before the ckpt
            logger.save()
        trainer.save_checkpoint(self.path, weights_only=False)
        self.saves += 1
        self._last_save_time = self._clock()
        self.saved_step = trainer.global_step


def _async_io(trainer: pl.Trainer):
    io = getattr(trainer.strategy, "checkpoint_io", None)
    return io if hasattr(io, "wait") else None


def wait_for_checkpoint(trainer: pl.Trainer) -> None:
    """Block until a checkpoint written in the background is on disk (no-op otherwise)."""
    io = _async_io(trainer)
    if io is not None:
        io.wait()


def _sizes_of(trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, int]:
    """The parts of the checkpoint just saved, from the live state (no file read)."""
    from solo_rgbd.engine.ckpt_info import breakdown

    roles = pl_module.state_roles()  # a RunModule member (fit_run checked it)
    return breakdown(
        {
            "state_dict": pl_module.state_dict(),
            "optimizer_states": [opt.state_dict() for opt in trainer.optimizers],
            "state_roles": roles,
        }
    )


# ----- checking a resume checkpoint against the model ----------------------------------------
def run_kind(module: torch.nn.Module) -> str:
    """What a run trains (a method's name, or a task's): a checkpoint resumes only its kind."""
    return str(module.run_kind) if isinstance(module, RunModule) else "?"


def check_resume_fits(ckpt: dict[str, Any], model: torch.nn.Module, path: Path) -> None:
    """The checkpoint was written by this method with this backbone (same keys and shapes)."""
    cfg = (ckpt.get("hyper_parameters") or {}).get("cfg") or {}
    kind = run_kind(model)
    if "state_dict" not in ckpt or not cfg:
        raise CheckpointError(
            f"resume checkpoint '{path}' is not a solo-rgbd run checkpoint (no state_dict or "
            "config); resume from a run's checkpoints/last.ckpt."
        )
    written_by = ckpt.get("run_kind") or cfg.get("method") or "an older solo-rgbd version"
    if written_by != kind:
        raise CheckpointError(
            f"resume checkpoint '{path}' was written by a '{written_by}' run, not '{kind}'; "
            f"resume it with the command (and method=) that wrote it, or pick another "
            "checkpoint."
        )
    own = model.state_dict()
    saved = ckpt["state_dict"]
    # state a block added after the checkpoint was written, which the block fills on load
    optional = {
        f"{name}.{key}"
        for name, module in model.named_modules()
        if isinstance(module, HasOptionalState)
        for key in module.optional_state
    }
    missing = sorted(set(own) - set(saved) - optional)
    unexpected = sorted(set(saved) - set(own))
    shapes = [k for k in own if k in saved and tuple(own[k].shape) != tuple(saved[k].shape)]
    if missing or unexpected or shapes:
        was = (cfg.get("backbone") or {}).get("name", "?")
        hparams = model.hparams if isinstance(model, pl.LightningModule) else {}
        now = ((hparams.get("cfg") or {}).get("backbone") or {}).get("name", "?")
        detail = ", ".join(
            f"{len(x)} {label} (e.g. {x[0]})"
            for x, label in ((missing, "missing"), (unexpected, "unexpected"), (shapes, "resized"))
            if x
        )
        raise CheckpointError(
            f"resume checkpoint '{path}' does not fit this model: {detail}. It was trained with "
            f"backbone '{was}' and this run builds '{now}'; resume with the run's own config "
            "(backbone, method_kwargs) or start a new run."
        )
