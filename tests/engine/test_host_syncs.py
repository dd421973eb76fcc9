"""Host syncs per training step (issue 32): a step that writes no metrics reads nothing back
from the device, except the non-finite guard's one flag when its policy reads it that step.

Counted on CPU by wrapping every Tensor method that reads a value to the host (``item``,
``cpu``, ``tolist``, ``numpy`` and the ``bool``/``int``/``float`` conversions) for the whole
run, and attributing each call to the step during which it happened (from the end of one
step's hooks to the end of the next). On CPU these calls are free; on a GPU each is a stall.
"""

from __future__ import annotations

import traceback

import lightning.pytorch as pl
import pytest
import torch

from solo_rgbd.commands.pretrain import run_pretrain
from solo_rgbd.config import compose
from tests.conftest import tiny_overrides

READS = ("item", "cpu", "tolist", "numpy", "__bool__", "__int__", "__float__", "__index__")


class StepSyncs(pl.Callback):
    """Host reads per step, with where they came from (the first frame inside solo_rgbd or
    lightning)."""

    def __init__(self) -> None:
        self.current: list[str] = []
        self.steps: list[dict] = []
        self.counting = False

    def record(self) -> None:
        if self.counting:
            frames = traceback.extract_stack(limit=30)[:-2]
            keep = [f for f in frames if "solo_rgbd" in f.filename or "lightning" in f.filename]
            self.current.append(
                " < ".join(
                    f"{f.filename.split('site-packages/')[-1]}:{f.lineno}" for f in keep[::-1][:6]
                )
            )

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.current, self.counting = [], True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        last = batch_idx + 1 >= trainer.num_training_batches
        self.steps.append(
            {
                "step": trainer.global_step,
                "first": batch_idx == 0,  # its count holds the epoch start's work
                "last": last,  # the epoch's end (export, checkpoint) is not in it
                "logging": pl_module.should_log(),
                "reads": self.current,
            }
        )
        self.current = []

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.counting = False


@pytest.fixture
def counted(monkeypatch):
    counter = StepSyncs()
    for name in READS:
        original = getattr(torch.Tensor, name)

        def wrapped(self, *args, _original=original, **kwargs):
            counter.record()
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, wrapped)
    return counter


def _middle_steps(counter: StepSyncs) -> list[dict]:
    """Steps that neither log nor follow a logging step (Lightning and the engine write a
    logging step's rows after the callbacks' batch-end hooks, so they count in the next)."""
    after_log = {s["step"] + 1 for s in counter.steps if s["logging"]}
    steps = [s for s in counter.steps if not (s["first"] or s["logging"] or s["step"] in after_log)]
    assert len(steps) >= 4, counter.steps
    return steps


@pytest.mark.parametrize(
    "method, extra",
    [
        ("mbcf", {"method_kwargs.stage1_epochs": "1", "method_kwargs.stage2_epochs": "1"}),
        ("mocov2plus", {"trainer.max_epochs": "2"}),
        ("byol", {"trainer.max_epochs": "2"}),
    ],
)
def test_a_step_that_logs_nothing_reads_only_the_guards_flag(tmp_path, counted, method, extra):
    over = tiny_overrides(
        tmp_path,
        method=method,
        log_every_n_steps="3",
        **{"data.synthetic.n": "64", "method_kwargs.queue_size": "16"}
        if method != "byol"
        else {"data.synthetic.n": "64"},
        **extra,
    )
    run_pretrain(compose("pretrain", over), extra_callbacks=[counted])
    for step in _middle_steps(counted):
        # nan_guard.every_n_steps=1 (the default) with policy=stop reads one flag per step
        assert len(step["reads"]) <= 1, step
        assert all("engine/guard.py" in r for r in step["reads"]), step


def test_with_the_guard_read_every_n_steps_a_plain_step_reads_nothing(tmp_path, counted):
    over = tiny_overrides(
        tmp_path,
        log_every_n_steps="4",
        **{
            "data.synthetic.n": "64",
            "method_kwargs.queue_size": "16",
            "method_kwargs.stage1_epochs": "1",
            "method_kwargs.stage2_epochs": "1",
            "nan_guard.every_n_steps": "4",
        },
    )
    run_pretrain(compose("pretrain", over), extra_callbacks=[counted])
    steps = _middle_steps(counted)
    quiet = [s for s in steps if s["step"] % 4 != 1]  # the guard reads at global_step % 4 == 0
    assert quiet and all(s["reads"] == [] for s in quiet), quiet
    # a logging step does read its metrics (the test would see a read if one happened)
    assert any(s["reads"] for s in counted.steps if s["logging"])
