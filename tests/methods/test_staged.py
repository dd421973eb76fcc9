"""The staged schedule as a plain object (no Lightning): stage, lr and epochs at any step, the
same numbers the paper's two stages (and the ablations' one stage) had inside the method."""

import pytest

from solo_rgbd.errors import ConfigError
from solo_rgbd.methods.staged import StagedSchedule
from solo_rgbd.nn.momentum import warmup_cosine

KW = {
    "stage1_epochs": 3,
    "stage2_epochs": 2,
    "stage1_lr": 0.03,
    "stage2_lr": 0.05,
    "one_stage_epochs": 4,
    "one_stage_lr": 0.07,
}


def _reference_lr(kind, step, per_epoch, warmup_epochs, decay):
    """The formula IntraCLM.lr_at had before the schedule became its own object."""
    total = per_epoch * (KW["one_stage_epochs"] if kind == "one_stage" else 5)
    warmup = int(warmup_epochs * per_epoch)
    if kind != "two_stage":
        base = KW["one_stage_lr"] if kind == "one_stage" else KW["stage1_lr"]
        return warmup_cosine(step, total, warmup, base, decay)
    switch = KW["stage1_epochs"] * per_epoch
    if step < switch:
        return warmup_cosine(step, switch, warmup, KW["stage1_lr"], decay)
    return warmup_cosine(step - switch, max(1, total - switch), warmup, KW["stage2_lr"], decay)


@pytest.mark.parametrize("kind", ["two_stage", "one_stage", "intra_only"])
@pytest.mark.parametrize("warmup, decay", [(0.0, "cosine"), (1.0, "cosine"), (0.5, "constant")])
def test_lr_at_every_step_equals_the_methods_former_formula(kind, warmup, decay):
    s = StagedSchedule.from_kwargs({**KW, "schedule": kind}, warmup, decay)
    per_epoch = 7
    for step in range(s.epochs * per_epoch + 3):  # and a few steps past the end
        assert s.lr_at(step, per_epoch) == _reference_lr(kind, step, per_epoch, warmup, decay)


def test_stages_epochs_and_switches():
    two = StagedSchedule.from_kwargs({**KW, "schedule": "two_stage"})
    assert two.epochs == 5 and two.base_lr == 0.03 and two.switch_epochs() == [3]
    assert [two.terms_at_epoch(e) for e in range(6)] == [1, 1, 1, 2, 2, 2]
    assert two.lr_at(3 * 10, 10) == pytest.approx(0.05)  # stage 2 restarts at its own lr
    one = StagedSchedule.from_kwargs({**KW, "schedule": "one_stage"})
    assert one.epochs == 4 and one.switch_epochs() == [] and one.terms_at_epoch(0) == 2
    intra = StagedSchedule.from_kwargs({**KW, "schedule": "intra_only"})
    assert intra.epochs == 5 and {intra.terms_at_epoch(e) for e in range(5)} == {1}


def test_a_max_epochs_cap_shortens_a_staged_run_with_a_warning_and_never_lengthens_it():
    s = StagedSchedule.from_kwargs({**KW, "schedule": "two_stage"})
    assert s.epochs_to_run(None, "mbcf") == (5, None)
    assert s.epochs_to_run(5, "mbcf") == (5, None)
    epochs, warning = s.epochs_to_run(3, "mbcf")  # ends with stage 1
    assert epochs == 3
    assert "stage1_epochs=3 + stage2_epochs=2" in warning and "never reached" in warning
    epochs, warning = s.epochs_to_run(4, "mbcf")  # one epoch of stage 2
    assert epochs == 4 and "never reached" not in warning
    with pytest.raises(ConfigError, match="trainer.max_epochs=6 is longer than method 'mbcf'"):
        s.epochs_to_run(6, "mbcf")
    one = StagedSchedule.from_kwargs({**KW, "schedule": "one_stage"})
    assert "one_stage_epochs=4" in one.epochs_to_run(2, "mbcf")[1]
    empty = StagedSchedule.from_kwargs({**KW, "schedule": "one_stage", "one_stage_epochs": 0})
    with pytest.raises(ConfigError, match="schedule of 0 epochs"):
        empty.epochs_to_run(None, "mbcf")
