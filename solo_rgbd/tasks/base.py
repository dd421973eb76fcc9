"""The downstream-task interface: everything the CLI and ``compare`` need to know about a task.

A task is a :class:`TaskSpec` registered under a name in the entry-point group
``solo_rgbd.tasks`` (the built-in ``sod`` is declared in solo-rgbd's ``setup.cfg`` like any
plug-in's). The spec names

- its config (``configs/<config_name>.yaml``, with ``encoders=``, data and recipe groups; a
  plug-in's ``configs/`` folder next to its entry point joins the search path),
- its label policy (how label maps are read and resized into the cache: saliency masks
  bilinearly, class-id maps with nearest),
- its on-device validation metrics (a torchmetrics ``Metric``, so DDP reduces them) and the
  ones that may select the best checkpoint (``{key: "min" | "max"}``, the first by default),
- its report (test-set metrics and headline for tables, compare and its bounds),
- its workflows: ``train(cfg) -> run folder`` (with ``checkpoints/best.ckpt``),
  ``evaluate(cfg) -> folder`` (with ``results.json``: ``{model: {dataset: {subset: scores}}}``),
  ``export_encoders(run, out) -> folder`` (the Supervised bound of ``compare``), and the optional
  ``linear_probe(cfg)`` and ``online_probes(cfg)`` (callbacks for pretraining).

``compare`` runs any registered task per cell with ``task=<name>``; the task's overrides are
the experiment's list under the task's name (``sod: [...]``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from torchmetrics import Metric

from solo_rgbd.data.decode import LabelPolicy
from solo_rgbd.evaluation.report import Report


@dataclass(frozen=True)
class TaskSpec:
    name: str
    config_name: str
    labels: LabelPolicy
    metrics: Callable[[], Metric]
    select_by: Mapping[str, str]  # metric key -> "min" | "max"; the first is the default
    report: Report
    train: Callable[[DictConfig], Path] | None = None
    evaluate: Callable[[DictConfig], Path] | None = None
    export_encoders: Callable[[Path, Path], Path] | None = None
    linear_probe: Callable[[DictConfig], dict] | None = None
    online_probes: Callable[[DictConfig], list[Any]] | None = None

    def with_workflows(self, **workflows: Callable[..., Any]) -> TaskSpec:
        """This spec with its workflows set (they live where the engine is wired in)."""
        return dataclasses.replace(self, **workflows)

    def select_mode(self, key: str) -> str:
        if key not in self.select_by:
            from solo_rgbd.errors import ConfigError

            raise ConfigError(
                f"select_by must be one of {', '.join(self.select_by)} for task '{self.name}', "
                f"not '{key}'."
            )
        return self.select_by[key]
