"""In-process runs: the non-finite guard, resume that never destroys, per-epoch checkpoints."""

import csv
import math
import os
import signal

import lightning.pytorch as pl
import pytest
import torch

from solo_rgbd.cli import main
from solo_rgbd.commands.pretrain import run_pretrain
from solo_rgbd.config import compose
from solo_rgbd.engine.checkpoint import wait_for_checkpoint
from solo_rgbd.errors import CheckpointError, NonFiniteError, Preempted
from solo_rgbd.nn.encoder_io import verify_export
from tests.conftest import tiny_overrides

SHORT = {
    "method_kwargs.stage1_epochs": "1",
    "method_kwargs.stage2_epochs": "1",
    "method_kwargs.queue_size": "16",
    "trainer.limit_train_batches": "3",
}


def _rows(run_dir):
    with open(run_dir / "logs" / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("every_n_epochs, expected", [(0, []), (1, [(3, 3)])])
def test_checkpoint_and_export_at_the_end_and_every_n_epochs(tmp_path, every_n_epochs, expected):
    """The default policy (every 10 minutes) checkpoints and exports a short run at its end
    only; ``every_n_epochs=1`` at every epoch's end as well, the export with its checkpoint."""
    seen = []
    run = tmp_path / "outputs" / "mbcf" / "e"

    class AfterEpoch(__import__("lightning.pytorch").pytorch.Callback):
        def on_train_epoch_start(self, trainer, m):
            wait_for_checkpoint(trainer)  # the background write the epoch's end started
            if (run / "checkpoints" / "last.ckpt").exists():
                ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
                seen.append((ckpt["global_step"], verify_export(run / "encoders")["global_step"]))

    every = {"checkpoint.every_n_epochs": str(every_n_epochs)}
    cfg = compose("pretrain", tiny_overrides(tmp_path, **SHORT, **every, run_name="e"))
    run_pretrain(cfg, [AfterEpoch()])
    assert seen == expected  # written at the end of epoch 0, before epoch 1 started
    ckpt = torch.load(tmp_path / "outputs/mbcf/e/checkpoints/last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 6 and ckpt["schedule_horizon"]["total_steps"] == 6
    assert ckpt["encoders"]["rgb"]["prefix"] == "encoders.rgb.model."
    assert verify_export(tmp_path / "outputs/mbcf/e/encoders")["global_step"] == 6


def test_a_diverging_run_stops_at_the_bad_step_and_keeps_the_good_files(tmp_path, capsys):
    over = tiny_overrides(
        tmp_path,
        **SHORT,
        run_name="nan",
        **{"method_kwargs.stage1_lr": "1e6", "checkpoint.every_n_steps": "1"},
    )
    assert main(["pretrain", *over]) == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "error: training stopped at step" in err and "loss_intra " in err and "; lr " not in err
    assert ", lr " in err
    assert "non-finite" in err and "Try a lower lr" in err
    run = tmp_path / "outputs" / "mbcf" / "nan"
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    bad_step = int(err.split("training stopped at step ")[1].split(" ")[0])
    assert ckpt["global_step"] == bad_step - 1  # the last good step is the one on disk
    assert all(
        torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point()
    )
    assert all(math.isfinite(float(r["loss"])) for r in _rows(run) if r.get("loss"))


def test_skip_policy_drops_bad_steps_then_stops():
    from types import SimpleNamespace

    from solo_rgbd.engine.guard import NonFiniteGuard

    w = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([w], lr=0.5, weight_decay=0.1)
    trainer = SimpleNamespace(global_step=7, current_epoch=1, optimizers=[opt])
    module = SimpleNamespace(loss_terms={"loss_intra": torch.tensor(float("nan"))})
    guard = NonFiniteGuard(policy="skip", max_skips=2)
    for _ in range(2):
        w.grad = torch.full((3,), float("nan"))
        guard.on_before_backward(trainer, module, torch.tensor(float("nan")))
        guard.on_before_optimizer_step(trainer, module, opt)
        opt.step()
        assert torch.equal(w.detach(), torch.ones(3))  # no update, no weight decay
    w.grad = torch.ones(3)
    guard.on_before_backward(trainer, module, torch.tensor(1.0))
    guard.on_before_optimizer_step(trainer, module, opt)  # a good step resets the count
    assert guard.skipped_in_a_row == 0 and w.grad is not None
    for _ in range(2):
        guard.on_before_backward(trainer, module, torch.tensor(float("inf")))
        guard.on_before_optimizer_step(trainer, module, opt)
    with pytest.raises(NonFiniteError, match="step 7 .*loss_intra nan, lr 0.5"):
        guard.on_before_backward(trainer, module, torch.tensor(float("inf")))
        guard.on_before_optimizer_step(trainer, module, opt)


def test_a_bad_resume_checkpoint_changes_nothing_in_the_run(tmp_path):
    over = tiny_overrides(tmp_path, **SHORT, run_name="r", **{"trainer.max_epochs": "1"})
    run = run_pretrain(compose("pretrain", over))
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    bad = run / "checkpoints" / "bad.ckpt"
    bad.write_bytes((run / "checkpoints" / "last.ckpt").read_bytes()[:3000])
    before[bad] = bad.read_bytes()
    with pytest.raises(CheckpointError, match="truncated, corrupt"):
        run_pretrain(compose("pretrain", over + [f"resume={bad}"]))
    after = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert after == before  # config.yaml, metrics.csv, checkpoints and encoders untouched


def test_resume_appends_to_the_metrics_and_keeps_the_old_config(tmp_path):
    over = tiny_overrides(tmp_path, **SHORT, run_name="r")
    run = run_pretrain(compose("pretrain", over + ["trainer.max_epochs=1"]))
    first = _rows(run)
    assert len(first) == 3
    run_pretrain(compose("pretrain", over + ["resume=last"]))
    rows = _rows(run)
    assert [{k: r[k] for k in first[0]} for r in rows[:3]] == first  # earlier rows kept
    assert [r["step"] for r in rows if r.get("loss")] == list(map(str, range(6)))
    assert "max_epochs: 1" in (run / "config.before-resume-0.yaml").read_text()


def test_optimizer_lr_is_refused_for_staged_methods(tmp_path):
    from solo_rgbd.errors import ConfigError

    cfg = compose("pretrain", tiny_overrides(tmp_path) + ["optimizer.lr=0.1"])
    with pytest.raises(ConfigError, match="stage1_lr.*stage2_lr"):
        run_pretrain(cfg)
    assert not (tmp_path / "outputs").exists()


class _SignalAt(__import__("lightning.pytorch").pytorch.Callback):
    """Sends this process a signal during step ``step`` (as a scheduler would)."""

    def __init__(self, step: int, sig=signal.SIGTERM) -> None:
        self.step, self.sig = step, sig

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.sig)


def test_preempted_then_resumed_run_with_an_online_probe_is_identical(tmp_path):
    over = tiny_overrides(
        tmp_path,
        **SHORT,
        **{
            "trainer.deterministic": "true",
            "data.val_fraction": "0.25",
            "probes.online.enabled": "true",
        },
    )
    ref = run_pretrain(compose("pretrain", over + ["run_name=ref"]))
    with pytest.raises(Preempted) as stop:
        run_pretrain(compose("pretrain", over + ["run_name=cut"]), [_SignalAt(4)])
    assert stop.value.exit_code == 143 and "after step 5" in str(stop.value)
    cut = run_pretrain(compose("pretrain", over + ["run_name=cut", "resume=last"]))
    assert _rows(cut) == _rows(ref)  # probe/loss and probe/maxF included
    a = torch.load(ref / "checkpoints/last.ckpt", weights_only=True)
    b = torch.load(cut / "checkpoints/last.ckpt", weights_only=True)
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert any(k.startswith("probe") for k in _rows(ref)[0])


def test_resume_auto_restarts_a_run_killed_before_its_first_checkpoint(tmp_path):
    over = tiny_overrides(tmp_path, **SHORT, run_name="a", **{"trainer.max_epochs": "1"})
    run = run_pretrain(compose("pretrain", over + ["resume=auto"]))  # no checkpoint: starts
    (run / "checkpoints" / "last.ckpt").unlink()  # as if killed during epoch 0
    rows = _rows(run)
    assert [r["step"] for r in rows] == ["0", "1", "2"]
    run_pretrain(compose("pretrain", over + ["resume=auto"]))  # starts again, same folder
    assert [r["step"] for r in _rows(run)] == ["0", "1", "2"]  # no row logged twice


def test_deferred_stop_check_names_the_first_bad_step_without_a_sync_in_between():
    """every_n_steps=4, stop: steps that do not read the flag never turn a tensor into a Python
    value (the host sync), and the error at the read names the first bad step."""
    from types import SimpleNamespace
    from unittest import mock

    from solo_rgbd.engine.guard import NonFiniteGuard

    w = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([w], lr=0.1)
    trainer = SimpleNamespace(global_step=0, current_epoch=0, optimizers=[opt])
    module = SimpleNamespace(loss_terms={})
    guard = NonFiniteGuard(policy="stop", every_n_steps=4)
    no_sync = AssertionError("a host sync on a step that does not check")
    for step, loss in ((1, 1.0), (2, float("nan")), (3, 1.0)):
        trainer.global_step = step
        w.grad = torch.ones(3)
        guard.on_before_backward(trainer, module, torch.tensor(loss))
        with (
            mock.patch.object(torch.Tensor, "__bool__", side_effect=no_sync),
            mock.patch.object(torch.Tensor, "__int__", side_effect=no_sync),
            mock.patch.object(torch.Tensor, "item", side_effect=no_sync),
        ):
            guard.on_before_optimizer_step(trainer, module, opt)
    trainer.global_step = 4
    w.grad = torch.ones(3)
    guard.on_before_backward(trainer, module, torch.tensor(1.0))
    with pytest.raises(NonFiniteError, match="first at step 2 .*checked every 4 steps"):
        guard.on_before_optimizer_step(trainer, module, opt)
    clean = NonFiniteGuard(policy="stop", every_n_steps=2)
    for step in range(4):
        trainer.global_step = step
        w.grad = torch.ones(3)
        clean.on_before_backward(trainer, module, torch.tensor(1.0))
        clean.on_before_optimizer_step(trainer, module, opt)  # finite: never raises
    assert int(clean.first_bad) == -1


class _PoisonStep(pl.Callback):
    """Makes the online RGB encoder's input NaN on one step: its BatchNorm statistics, the
    fused queue and (via the loss) the gradients all see the bad batch."""

    def __init__(self, step: int) -> None:
        self.step, self.handle = step, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            self.handle = pl_module.encoders["rgb"].register_forward_pre_hook(
                lambda m, args: (args[0] * float("nan"),)
            )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.handle is not None:
            self.handle.remove()
            self.handle = None


class _StateAt(pl.Callback):
    def __init__(self, steps) -> None:
        self.steps, self.states = steps, {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step in self.steps and trainer.global_step not in self.states:
            self.states[trainer.global_step] = {
                k: v.detach().clone() for k, v in pl_module.state_dict().items()
            }


def test_a_skipped_bad_step_leaves_no_trace_and_the_run_ends_finite(tmp_path):
    over = tiny_overrides(
        tmp_path,
        **{
            "method_kwargs.schedule": "one_stage",
            "method_kwargs.one_stage_epochs": "2",
            "method_kwargs.queue_size": "16",
            "trainer.limit_train_batches": "3",
            "nan_guard.policy": "skip",
            "run_name": "bad",
        },
    )
    states = _StateAt({2, 3})
    run = run_pretrain(compose("pretrain", over), [_PoisonStep(2), states])
    before, after = states.states[2], states.states[3]
    # weights, BatchNorm statistics, queues and pointers, momentum encoders: as before step 2
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed == []
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    for key, value in ckpt.items():
        if value.is_floating_point():
            assert torch.isfinite(value).all(), key
    assert not torch.equal(ckpt["queues.rgb.keys"], after["queues.rgb.keys"])  # training went on
