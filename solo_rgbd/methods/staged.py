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

from solo_rgbd.errors import ConfigError
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
    source: str = ""  # the kwargs the stages come from, for messages

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
        source = (
            f"one_stage_epochs={kw['one_stage_epochs']}"
            if kind == "one_stage"
            else f"stage1_epochs={s1} + stage2_epochs={s2}"
        )
        return cls(kind, stages, float(warmup_epochs), str(decay), source)

    @property
    def epochs(self) -> int:
        """The epochs every stage spans together."""
        return sum(s.epochs for s in self.stages)

    @property
    def base_lr(self) -> float:
        return self.stages[0].lr

    def epochs_to_run(self, cap: int | None, method: str) -> tuple[int, str | None]:
        """The epochs a run trains: the schedule's, or fewer when ``trainer.max_epochs``
        (``cap``) stops it early; and a warning when it does. lr and momentum always span the
        whole schedule, so a shortened run is the first epochs of the full one."""
        total = self.epochs
        if total < 1:
            raise ConfigError(
                f"method '{method}' has a {self.kind} schedule of 0 epochs; set "
                "method_kwargs.stage1_epochs / stage2_epochs (or one_stage_epochs)."
            )
        if cap is None or cap == total:
            return total, None
        if cap > total:
            raise ConfigError(
                f"trainer.max_epochs={cap} is longer than method '{method}''s {self.kind} "
                f"schedule ({self.source} = {total} epochs); set the stage epochs in "
                "method_kwargs instead (trainer.max_epochs only stops a staged run early)."
            )
        never = [i for i, start in enumerate(self.switch_epochs()) if cap <= start]
        return cap, (
            f"trainer.max_epochs={cap} stops method '{method}' after {cap} of its {total} "
            f"scheduled epochs ({self.source})"
            + ("; stage 2 (InterCLM) is never reached" if never else "")
            + ". lr and momentum follow the full schedule."
        )

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
