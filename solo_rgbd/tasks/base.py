"""The downstream-task interface: what the engine, the commands and ``compare`` need to know
about a task, as data.

A task is one folder under ``tasks/`` holding its network and LightningModule, plus a
:class:`TaskSpec` that names

- its config (``configs/<config_name>.yaml``, with ``encoders=``, data and recipe groups),
- its label policy (how label maps are read and resized into the cache: saliency masks
  bilinearly, class-id maps with nearest),
- its on-device validation metrics (a torchmetrics ``Metric``, so DDP reduces them) and the
  one that selects the best checkpoint.

``solo_rgbd.commands.<name>`` wires the task to the engine (train / eval / predict); compare
runs any registered task's ``train`` then ``eval`` per cell (``task=<name>`` in the grid).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torchmetrics import Metric

from solo_rgbd.data.cache import LabelPolicy
from solo_rgbd.evaluation.report import Report


@dataclass(frozen=True)
class TaskSpec:
    name: str
    config_name: str
    labels: LabelPolicy
    metrics: Callable[[], Metric]
    select_by: tuple[str, str]  # (metric key, "min" | "max") for the best checkpoint
    report: Report  # test-set metrics and headline for tables, compare and its bounds
