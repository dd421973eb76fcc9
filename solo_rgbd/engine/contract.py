"""What the engine needs from the modules it trains, declared.

Every run (:func:`solo_rgbd.engine.fit.fit_run`) trains a LightningModule that is a
:class:`RunModule`; a pretraining method is also an :class:`EncoderModule` (its encoders are
exported each epoch, and its own scalars reach ``metrics.csv`` without Lightning's
``self.log``). Everything else goes through Lightning: ``self.log(...)`` of any module lands in
``logs/metrics.csv`` (:class:`~solo_rgbd.engine.csv_logger.RunCSVLogger`).

The checks are structural (``isinstance`` with :func:`typing.runtime_checkable`):
``tests/engine/test_contract.py`` holds every registered method and every task module to them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import torch


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
