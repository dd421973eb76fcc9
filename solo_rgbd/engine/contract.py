"""What the engine needs from the modules it trains, declared.

Every run (:func:`solo_rgbd.engine.fit.fit_run`) trains a LightningModule that is a
:class:`RunModule`; a pretraining method is also an :class:`EncoderModule` (its encoders are
exported each epoch, and its own scalars reach ``metrics.csv`` without Lightning's
``self.log``). Everything else goes through Lightning: ``self.log(...)`` of any module lands in
``logs/metrics.csv`` (:class:`~solo_rgbd.engine.csv_logger.RunCSVLogger`).

The engine enforces them: :func:`~solo_rgbd.engine.fit.fit_run` refuses a module that lacks a
member of :class:`RunModule` (:func:`require`), naming each missing member, before anything is
built or written; ``tests/engine/test_contract.py`` holds every registered method and every
task module to them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Generic, Protocol, runtime_checkable

import torch

from solo_rgbd.errors import ConfigError


@runtime_checkable
class RunModule(Protocol):
    """Any module the engine trains."""

    #: what a resume checkpoint must have been written by (a method's name, ``sod``, ...);
    #: :class:`~solo_rgbd.engine.checkpoint.RunCheckpoint` stores it in every checkpoint
    run_kind: str

    def state_roles(self) -> dict[str, list[str]]:
        """Role (``momentum``, ``queues``) -> the module prefixes holding that state, for
        ``solo-rgbd ckpt info``; empty lists when every tensor is trained weights."""
        ...


@runtime_checkable
class NamesLossTerms(Protocol):
    """A module that keeps its current step's loss terms (detached), which the non-finite
    guard names in its error (every method; a task may too)."""

    loss_terms: Mapping[str, torch.Tensor]


@runtime_checkable
class HasOptionalState(Protocol):
    """A block (any submodule) whose state dict has entries added after checkpoints were
    written without them; the block fills them on load, so a resume does not call them
    missing (e.g. a queue's sample ids)."""

    optional_state: tuple[str, ...]


@runtime_checkable
class EncoderModule(RunModule, Protocol):
    """A pretraining method: the engine exports its encoders and writes its scalar rows."""

    method_name: str
    #: has parameters that get no gradient in some steps (DDP needs find_unused_parameters)
    has_unused_parameters: bool
    #: the current step's loss terms (detached), named in the non-finite guard's error
    loss_terms: Mapping[str, torch.Tensor]
    #: names in :meth:`pop_log_row`'s rows that the progress bar shows
    progress_keys: set[str]

    def planned_epochs(self) -> int:
        """The run's epochs (trainer.max_epochs, or the method's own stages)."""
        ...

    def export_encoders(self) -> dict[str, Any]:
        """Stream name -> :class:`~solo_rgbd.nn.backbone.Encoder`, exported every epoch."""
        ...

    def pop_log_row(self) -> dict[str, Any]:
        """This step's scalars (device tensors), read once by the engine's MetricsWriter."""
        ...


def members(protocol: type) -> list[str]:
    """The attributes and methods ``protocol`` (with its protocol bases) declares."""
    names: list[str] = []
    for klass in reversed(protocol.__mro__):
        if klass in (object, Protocol, Generic):
            continue
        declared = [*klass.__dict__.get("__annotations__", {})]
        declared += [n for n, v in vars(klass).items() if callable(v) and not n.startswith("_")]
        names += [n for n in declared if n not in names]
    return names


def missing_members(obj: object, protocol: type) -> list[str]:
    return [name for name in members(protocol) if not hasattr(obj, name)]


def require(obj: object, protocol: type) -> None:
    """Raise :class:`ConfigError` naming every member of ``protocol`` that ``obj`` lacks."""
    missing = missing_members(obj, protocol)
    if missing:
        raise ConfigError(
            f"{type(obj).__name__} cannot be trained by solo-rgbd's engine: it lacks "
            f"{', '.join(repr(m) for m in missing)} of {protocol.__name__} "
            "(solo_rgbd/engine/contract.py declares each). Define them on the module (a "
            "method: subclass solo_rgbd.methods.base.BaseMethod, which has them)."
        )
