"""Staged schedules as a plain object: which stage, which lr, how many epochs.

The paper trains MBCF in two stages (Sec. 3.4): IntraCLM alone for ``stage1_epochs`` at
``stage1_lr``, then IntraCLM + InterCLM for ``stage2_epochs`` at ``stage2_lr``, each stage with
its own cosine decay. Its ablations train both terms from the start (``one_stage``) or IntraCLM
alone for the same budget (``intra_only``). :class:`StagedSchedule` answers "stage, lr and
epochs at step s" from the method's kwargs, with no Lightning: a method asks it with the global
step and the steps per epoch, so the answers survive any resume.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from solo_rgbd.nn.momentum import warmup_cosine

SCHEDULES = ("two_stage", "one_stage", "intra_only")


@dataclass(frozen=True)
class Stage:
    epochs: int
    lr: float
    terms: int  # 1: IntraCLM only; 2: IntraCLM + the inter-modal term


@dataclass(frozen=True)
class StagedSchedule:
    kind: str  # two_stage | one_stage | intra_only
    stages: tuple[Stage, ...]
    warmup_epochs: float = 0.0  # a linear warmup at the start of every stage
    decay: str = "cosine"  # cosine | constant, within each stage

    @classmethod
    def from_kwargs(
        cls, kw: Mapping[str, Any], warmup_epochs: float = 0.0, decay: str = "cosine"
    ) -> StagedSchedule:
        kind = str(kw["schedule"])
        s1, s2 = int(kw["stage1_epochs"]), int(kw["stage2_epochs"])
        if kind == "one_stage":
            stages = (Stage(int(kw["one_stage_epochs"]), float(kw["one_stage_lr"]), 2),)
        elif kind == "intra_only":  # the "Intra-modal" ablation on the two stages' budget
            stages = (Stage(s1 + s2, float(kw["stage1_lr"]), 1),)
        else:
            stages = (Stage(s1, float(kw["stage1_lr"]), 1), Stage(s2, float(kw["stage2_lr"]), 2))
        return cls(kind, stages, float(warmup_epochs), str(decay))

    @property
    def epochs(self) -> int:
        """The epochs every stage spans together."""
        return sum(s.epochs for s in self.stages)

    @property
    def base_lr(self) -> float:
        return self.stages[0].lr

    def index_at_epoch(self, epoch: int) -> int:
        """The stage that epoch ``epoch`` belongs to (the last one past the end)."""
        start = 0
        for i, stage in enumerate(self.stages):
            start += stage.epochs
            if epoch < start:
                return i
        return len(self.stages) - 1

    def terms_at_epoch(self, epoch: int) -> int:
        """1: IntraCLM only; 2: IntraCLM + the inter-modal term."""
        return self.stages[self.index_at_epoch(epoch)].terms

    def switch_epochs(self) -> list[int]:
        """The epochs at which a later stage starts."""
        starts, start = [], 0
        for stage in self.stages[:-1]:
            start += stage.epochs
            starts.append(start)
        return starts

    def lr_at(self, step: int, steps_per_epoch: int) -> float:
        """The lr of optimizer step ``step``: each stage warms up and decays on its own."""
        warmup = int(self.warmup_epochs * steps_per_epoch)
        start = 0
        for i, stage in enumerate(self.stages):
            length = stage.epochs * steps_per_epoch
            if step < start + length or i == len(self.stages) - 1:
                return warmup_cosine(step - start, max(1, length), warmup, stage.lr, self.decay)
            start += length
        raise AssertionError("unreachable: the last stage takes every later step")
