"""What one cell of a grid returns: a typed result, checked against the task's report.

A cell (one row x one seed) trains the task and scores it. Its :class:`CellResult` holds

- ``frozen``: ``{dataset: {subset: {metric: value, "n": pairs}}}``, the task's evaluation with
  the encoders frozen (the tables' numbers);
- ``probes``: ``{dataset: {modality: {metric: value}}}`` when the grid runs linear probes;
- ``finetune``: ``{label fraction: <frozen-shaped scores>}`` when it fine-tunes.

``done.json`` holds :meth:`CellResult.to_json` (the frozen scores at the top level, the
protocols under ``_probes`` / ``_finetune``), so finished cells of earlier versions are reused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from solo_rgbd.compare.protocols import FINETUNE, PROBES
from solo_rgbd.errors import ConfigError
from solo_rgbd.evaluation.report import Report

Scores = dict[str, dict[str, dict[str, float]]]  # dataset -> subset -> metric -> value


@dataclass(frozen=True)
class CellResult:
    frozen: Scores
    probes: dict[str, dict[str, dict[str, float]]] | None = None
    finetune: dict[str, Scores] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.frozen)
        if self.probes is not None:
            out[PROBES] = self.probes
        if self.finetune is not None:
            out[FINETUNE] = self.finetune
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CellResult:
        frozen = {k: v for k, v in data.items() if k not in (PROBES, FINETUNE)}
        return cls(frozen, data.get(PROBES), data.get(FINETUNE))

    def check(self, report: Report, task: str) -> CellResult:
        """Every subset has a pair count ``n`` and every metric of the task's report; a task
        that returns less is named with what it left out."""
        blocks = [("", self.frozen)]
        blocks += [(f"finetune {f}: ", s) for f, s in (self.finetune or {}).items()]
        for where, scores in blocks:
            if not scores:
                raise ConfigError(f"task '{task}' returned no scores ({where or 'frozen'}).")
            for dataset, subsets in scores.items():
                for subset, values in subsets.items():
                    want = ["n", *(key for key, _, _ in report.metrics)]
                    missing = [k for k in want if k not in values]
                    if missing:
                        raise ConfigError(
                            f"task '{task}' scored {where}{dataset}/{subset} without "
                            f"{', '.join(missing)}; its evaluate() must write every metric of "
                            "its Report and the pair count 'n' into results.json."
                        )
        return self
