"""Checkpoints that hold everything deciding a run's future, written atomically.

:class:`RunCheckpoint` writes ``checkpoints/last.ckpt`` at the end of every epoch, every
``every_n_steps`` optimizer steps and every ``every_n_minutes`` of wall time if set, and when a
preemption signal arrived (then it waits for the write and raises
:class:`~solo_rgbd.errors.Preempted`). With ``checkpoint.async_save`` (``auto``: on a GPU) the
file is written by a background thread (:mod:`solo_rgbd.engine.async_io`); the step loop only
pays for a host copy of the state. On CPU (``auto``) the loop serialises into host memory
and the thread writes, fsyncs and swaps the file in; ``false`` writes synchronously. Besides
what Lightning saves (weights, momentum encoders, queues as buffers, optimizer, loop progress,
the data position of :class:`~solo_rgbd.data.sampler.ResumableLoader`), it saves the RNG
states of torch (CPU and CUDA), numpy and python, restored at ``on_train_start`` of the
resumed run, so augmentation draws continue exactly where they stopped.

Checkpoints are saved at ``on_train_batch_end``, after the method's optimizer step and
momentum update (``BaseMethod.optimizer_step``), and after the metrics of the step are on disk.
"""

from __future__ import annotations

import os
import random
import statistics
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
from solo_rgbd.utils.atomic import RecycledFile, discard_spare
from solo_rgbd.utils.console import say
from solo_rgbd.utils.direct_io import HostBuffer, serialise, write_out
from solo_rgbd.utils.finite import all_finite


class StagedCheckpoint:
    """A checkpoint serialised into host memory: :meth:`commit` writes it into the spare of
    ``path`` (:func:`~solo_rgbd.utils.direct_io.write_out`), fsyncs it and swaps it in
    (:class:`~solo_rgbd.utils.atomic.RecycledFile`); :meth:`discard` drops it."""

    def __init__(self, buffer: HostBuffer, path) -> None:
        self.buffer = buffer
        self.file = RecycledFile(path)

    def commit(self) -> None:
        try:
            write_out(self.buffer, self.file.spare)
        except BaseException:
            self.file.discard()
            raise
        self.file.commit()

    def discard(self) -> None:
        self.file.discard()


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoints written atomically: serialised into a host buffer kept between
    saves, written into the file of the checkpoint before last (kept beside it as a hidden
    spare) past the page cache, fsynced, and swapped into place (:class:`StagedCheckpoint`);
    :meth:`teardown` removes the spares and frees the buffer."""

    def __init__(self) -> None:
        super().__init__()
        self._paths: set[Path] = set()
        self.buffer = HostBuffer()

    def stage_checkpoint(self, checkpoint: dict[str, Any], path) -> StagedCheckpoint:
        """Serialise ``checkpoint`` into :attr:`buffer`, which is busy until the returned
        write is committed or discarded; ``commit()`` puts it on disk."""
        self._paths.add(Path(path))
        serialise(checkpoint, self.buffer)
        return StagedCheckpoint(self.buffer, path)

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        self.stage_checkpoint(checkpoint, path).commit()

    def teardown(self) -> None:
        for path in self._paths:
            discard_spare(path)
        self._paths.clear()
        self.buffer.close()


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
    """``last.ckpt`` every epoch, every ``every_n_steps`` steps, and on preemption signals."""

    def __init__(
        self,
        dirpath: str | os.PathLike[str],
        every_n_steps: int = 0,
        resume_hint: str = "",
        every_n_minutes: float = 0.0,
        clock=time.monotonic,
    ) -> None:
        self.dirpath = Path(dirpath)
        self.every_n_steps = int(every_n_steps or 0)
        self.every_s = float(every_n_minutes or 0.0) * 60.0
        self.resume_hint = resume_hint
        self.signals = SignalWatch()
        self.last_path: Path | None = None
        self.saved_step: int | None = None
        self._rng_to_restore: dict[str, Any] | None = None
        self._stop_at: tuple[int, int, int] | None = None  # (signal, step, epoch) to exit after
        self._stop_saved = False  # the checkpoint of that step is written
        self._clock = clock
        self._last_save_time = clock()
        #: seconds the step loop spent in each save (state copy, or the whole synchronous write)
        self.stalls: list[float] = []
        self.sizes: dict[str, int] | None = None

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

    # ----- hooks ------------------------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._rng_to_restore is not None:
            restore_rng(self._rng_to_restore)
            self._rng_to_restore = None
        self.signals.install()
        self._last_save_time = self._clock()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._exit_if_stopped(trainer)
        wait_for_checkpoint(trainer)
        if trainer.is_global_zero and self.stalls:
            from solo_rgbd.engine.ckpt_info import summary_line

            self.sizes = _sizes_of(trainer, pl_module)  # the state of the last save
            io = _async_io(trainer)
            mode = "synchronously" if io is None else "in the background"
            if getattr(io, "stage_here", False):
                mode = "in the background, serialised by the loop"
            say(
                f"checkpoint: {summary_line(self.sizes)}; {len(self.stalls)} saves written "
                f"{mode}, the step loop waited {statistics.median(self.stalls) * 1e3:.0f} ms "
                "per save (median)"
            )

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.signals.restore()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self.signals.restore()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        stop = self.signals.signum is not None
        if trainer.world_size > 1:  # every rank stops at the same step
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        due = self.every_s > 0 and self._clock() - self._last_save_time >= self.every_s
        if trainer.world_size > 1 and self.every_s > 0:  # rank 0's clock decides for all
            due = bool(trainer.strategy.broadcast(due, src=0))
        step = trainer.global_step
        periodic = self.every_n_steps > 0 and step > 0 and step % self.every_n_steps == 0
        # the epoch's last step is saved at the epoch's end (after its validation), so that
        # a checkpoint inside an epoch never holds rows the epoch's end logs after it
        last = batch_idx + 1 >= getattr(trainer, "num_training_batches", float("inf"))
        if (stop or periodic or due) and not last:
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
        start = time.perf_counter()
        trainer.save_checkpoint(self.path, weights_only=False)
        self.stalls.append(time.perf_counter() - start)
        self._last_save_time = self._clock()
        self.last_path, self.saved_step = self.path, trainer.global_step


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
